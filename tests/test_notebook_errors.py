"""Notebooks on unfinished labs: a cell that stops at a step still to write, or fails because of one, says which
step to finish in a few lines instead of a long traceback; other errors keep their traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
import nbformat
from nbclient import NotebookClient

from course.notebook import explain

ROOT = Path(__file__).resolve().parent.parent


def traceback_of(exc: BaseException):
    try:
        raise exc
    except BaseException:  # noqa: BLE001
        return sys.exc_info()[2]


def test_each_kind_of_error_names_the_step():
    todo = explain(NotImplementedError, NotImplementedError("TODO: read extversion"), None)
    assert "yours to write" in todo and "TODO: read extversion" in todo
    table = asyncpg.exceptions.UndefinedTableError('relation "embeddings" does not exist')
    assert "create_embeddings_table()" in explain(type(table), table, None)
    vector = asyncpg.exceptions.UndefinedObjectError('type "vector" does not exist')
    assert "enable_extension()" in explain(type(vector), vector, None)
    assert "did not finish" in explain(NameError, NameError("name 'df' is not defined"), None)
    assert explain(ZeroDivisionError, ZeroDivisionError("division by zero"), None) is None, "other errors: traceback"


def test_notebook_01_on_the_starter_labs_points_at_the_steps(monkeypatch):
    monkeypatch.setenv("COURSE_TARGET", "labs")
    monkeypatch.delenv("COURSE_STRICT_CHECKS", raising=False)
    nb = nbformat.read(ROOT / "notebooks/01_setup.ipynb", as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=True,
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    failed = [cell for cell in nb.cells if cell.cell_type == "code"
              and any(o.get("output_type") == "error" or o.get("name") == "stderr" for o in cell.get("outputs", []))]
    texts = ["".join(o.get("text", "")) + "\n".join(o.get("traceback", [])) for cell in failed for o in cell.outputs]
    assert failed, "the starter labs should stop at the first TODO"
    assert any("This step is yours to write: `enable_extension()` in labs/objective1.py" in t for t in texts), texts[:3]
    long = [t for t in texts if t.count("\n") > 12]
    assert not long, f"an unfinished step produced a long traceback:\n{long[0][:2000]}"
