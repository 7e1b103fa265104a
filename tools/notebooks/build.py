"""Build notebooks/*.ipynb from their sources, tools/notebooks/NN_name.py, in jupytext's percent format.

A source is a Python file: `# %%` starts a code cell, `# %% [markdown]` a markdown cell (its lines commented), and
magics are written commented (`# %load_ext autoreload`). Linters and editors read it as code; JupyterLab opens it as
a notebook (right-click → Open With → Notebook, jupytext's extension) to run it against the reference and save.
Notebooks are written without outputs, with stable cell ids (c00, c01, …) and the course kernelspec, so their diffs
stay readable.

    python tools/notebooks/build.py           # rebuild every notebook
    python tools/notebooks/build.py --check   # exit 1 if a notebook differs from its source
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parent.parent / "notebooks"
KERNELSPEC = {"display_name": "Python 3 (course)", "language": "python", "name": "python3"}


def sources() -> list[Path]:
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def render(source: Path) -> str:
    """The notebook a source describes: its cells only (no outputs, no execution counts, no jupytext metadata)."""
    parsed = jupytext.read(source, fmt="py:percent")
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for i, cell in enumerate(parsed.cells):
        text = cell.source.strip("\n")
        new = nbformat.v4.new_markdown_cell(text) if cell.cell_type == "markdown" else nbformat.v4.new_code_cell(text)
        new["id"] = f"c{i:02d}"
        nb.cells.append(new)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for source in sources():
        target = NOTEBOOKS / f"{source.stem}.ipynb"
        text = render(source)
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    if stale:
        print(
            f"notebooks out of date with tools/notebooks/: {', '.join(stale)} (run python tools/notebooks/build.py)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
