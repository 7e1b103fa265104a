"""Learner CLI: `python -m checks 1` (or `make check OBJ=1`) grades your labs/objective1.py.

    python -m checks 1                      # your work (COURSE_TARGET, default labs)
    python -m checks 1 --target solutions   # the reference, to see what passing looks like
    python -m checks all
"""

from __future__ import annotations

import argparse
import sys

from checks.runner import CHECKS_DIR, run_checks

TITLES = {
    1: "pgvector setup",
    2: "HNSW and IVFFlat indexes",
    3: "distance operators and search_similar()",
    4: "hybrid search",
    5: "SQLAlchemy async ORM",
    6: "the semantic search service",
}


def available() -> list[int]:
    return sorted(int(p.stem.removeprefix("test_objective")) for p in CHECKS_DIR.glob("test_objective*.py"))


def report(objective: int, target: str | None, verbose: bool = False) -> bool:
    results = run_checks(objective, target)
    from course.settings import get_settings

    shown_target = target or get_settings().course_target
    print(f"\nObjective {objective} — {TITLES.get(objective, '')}  (grading {shown_target}/)")
    for r in results:
        print(f"  {'✅' if r.passed else '❌'} {r.title}")
        if not r.passed:
            print(f"       {r.message.splitlines()[0] if r.message else r.outcome}")
            if r.hint:
                print(f"       hint: {r.hint}")
    earned = sum(r.points for r in results if r.passed)
    total = sum(r.points for r in results)
    passed = sum(r.passed for r in results)
    print(f"  Score: {earned:g}/{total:g} points ({passed} of {len(results)} checks passed)")
    return passed == len(results) and bool(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("objective", help="objective number, or 'all'")
    parser.add_argument("--target", choices=["labs", "solutions"], default=None)
    args = parser.parse_args(argv)
    numbers = available() if args.objective == "all" else [int(args.objective)]
    ok = all([report(n, args.target) for n in numbers])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
