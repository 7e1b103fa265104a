"""The starter as a class receives it (this file ships in the student release): every check of every objective
fails on the untouched labs with a hint, never because the check itself broke; and every notebook, run from top to
bottom on the untouched labs, stops at steps to write with a short note, never a long traceback."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from checks.__main__ import available
from checks.runner import run_checks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("0*.ipynb"))


@pytest.mark.parametrize("objective", available())
def test_every_check_fails_on_the_starter_with_a_hint(objective, monkeypatch):
    monkeypatch.setenv("COURSE_TARGET", "labs")
    results = run_checks(objective, "labs")
    assert results, f"objective {objective}: no checks ran"
    passing = [r.title for r in results if r.passed]
    assert not passing, f"checks that pass on an untouched starter prove nothing: {passing}"
    unhinted = [r.title for r in results if not r.hint]
    assert not unhinted, f"failures without a hint: {unhinted}"
    broken = [
        f"{r.title}: {r.message[:200]}"
        for r in results
        if not r.message.startswith(("NotImplementedError", "AssertionError", "assert", "Failed: DID NOT RAISE"))
    ]
    assert not broken, (
        f"failures for another reason than the unfinished step (an import error, a broken check): {broken}"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_notebook_on_the_starter_stops_at_steps_to_write(notebook, monkeypatch):
    monkeypatch.setenv("COURSE_TARGET", "labs")
    monkeypatch.delenv("COURSE_STRICT_CHECKS", raising=False)
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        allow_errors=True,
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    errors = [
        o
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert errors, f"{notebook}: the untouched starter should stop at a step to write"
    first = "\n".join(errors[0].get("traceback", []))
    assert "This step is yours to write" in first, f"{notebook}: the first stop should name a step:\n{first[:1500]}"
    long = ["\n".join(o.get("traceback", [])) for o in errors if len(o.get("traceback", [])) > 12]
    assert not long, f"{notebook}: an error on the starter produced a long traceback:\n{long[0][:3000]}"
