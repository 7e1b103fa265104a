"""`python -m bench [name ...]` runs the benchmarks (all by default) and prints same-run ratios."""

from __future__ import annotations

import asyncio
import importlib
import sys

BENCHMARKS = ["indexes", "orm", "service", "quality", "scale", "coldstart", "cluster"]


def main(argv: list[str]) -> int:
    from course import database

    database.start()
    for name in argv or BENCHMARKS:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        asyncio.run(importlib.import_module(f"bench.{name}").run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
