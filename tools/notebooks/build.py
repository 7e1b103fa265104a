"""Build notebooks/*.ipynb from the cell lists in tools/notebooks/NN_name.py (the notebooks' single source).

Each spec module defines CELLS: strings, markdown when they start with "md:", code otherwise. Notebooks are written
without outputs, with stable cell ids and the course kernelspec, so diffs stay readable.

    python tools/notebooks/build.py           # rebuild every notebook
    python tools/notebooks/build.py --check   # exit 1 if a notebook differs from its spec
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parent.parent / "notebooks"
KERNELSPEC = {"display_name": "Python 3 (course)", "language": "python", "name": "python3"}


def render(spec: Path) -> str:
    module_spec = importlib.util.spec_from_file_location(spec.stem, spec)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for i, source in enumerate(module.CELLS):
        source = source.strip("\n")
        if source.startswith("md:"):
            cell = nbformat.v4.new_markdown_cell(source[3:].strip("\n"))
        else:
            cell = nbformat.v4.new_code_cell(source)
        cell["id"] = f"c{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for spec in sorted(HERE.glob("[0-9][0-9]_*.py")):
        target = NOTEBOOKS / f"{spec.stem}.ipynb"
        text = render(spec)
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    if stale:
        print(f"notebooks out of date with tools/notebooks/: {', '.join(stale)} (run python tools/notebooks/build.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
