"""Errors in the notebooks that point at the cause.

On unfinished labs a notebook cell stops at the learner's first TODO, and later cells fail for reasons far from it
(a table that was never created, a type from an extension that was never enabled, a variable an earlier cell never
set). `friendly_errors()` (the notebooks' first cell calls it) replaces those tracebacks with one paragraph saying
which step to finish; every other error keeps its normal traceback. The cell still fails, so "Run all" stops there.
"""

from __future__ import annotations

import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lab_frame(tb) -> tuple[str, str] | None:
    """(file relative to the repository, function) of the innermost frame in the learner's labs/ code."""
    found = None
    for frame in traceback.extract_tb(tb):
        path = Path(frame.filename)
        if "labs" in path.parts:
            try:
                found = (path.resolve().relative_to(ROOT).as_posix(), frame.name)
            except ValueError:
                found = (path.as_posix(), frame.name)
    return found


def explain(etype: type[BaseException], value: BaseException, tb=None) -> str | None:
    """The paragraph to show instead of the traceback, or None to show the traceback."""
    name = etype.__name__
    text = str(value)
    if isinstance(value, NotImplementedError) and text.startswith("TODO"):
        where = _lab_frame(tb)
        place = f"`{where[1]}()` in {where[0]}" if where else "a function in labs/"
        return (
            f"⏸  This step is yours to write: {place}.\n   {text}\n"
            "   Write it, save the file, and re-run this cell (the notebook reloads your code)."
        )
    if name == "UndefinedTableError" and '"embeddings"' in text:
        return (
            "⏸  The `embeddings` table does not exist in this database yet. Finish the step that creates it "
            "(Objective 1: create_embeddings_table()), run that cell, then re-run this one."
        )
    if (
        name in ("UndefinedObjectError", "UnknownPostgresError", "ValueError")
        and "vector" in text
        and ("does not exist" in text or "unknown type" in text)
    ):
        return (
            "⏸  pgvector is not enabled in this database yet (the `vector` type is unknown). Finish the step "
            "that enables it (Objective 1: enable_extension()), run that cell, then re-run this one."
        )
    if isinstance(value, NameError):
        return (
            f"⏸  {text}: a cell above did not finish (most likely at a step still to write) or the name is "
            "misspelled. Scroll up to the first cell that stopped, finish that step, and run the cells from there "
            "in order."
        )
    return None


def friendly_errors() -> bool:
    """Install the explanations in the running IPython kernel; False outside IPython."""
    try:
        ip = get_ipython()  # type: ignore[name-defined]  # noqa: F821 — defined inside IPython
    except NameError:
        return False

    def handler(shell, etype, value, tb, tb_offset=None):
        message = explain(etype, value, tb)
        if message is None:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        else:  # shown as the cell's error output, with these few lines as its whole "traceback"
            shell._showtraceback(etype, value, message.splitlines())
        return None

    ip.set_custom_exc((Exception,), handler)
    return True
