"""Learner checks. In a notebook: `from checks import check; check(1)`; in a terminal: `python -m checks 1`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def check(objective: int | None = None, target: str | None = None, *, more_hints: bool = False) -> bool:
    """Grade one objective in a fresh process (so your latest edits to labs/ are what is graded) and print
    ✅/❌ per check with hints; with no objective, your progress over all of them. Returns True if every check
    passed. `more_hints=True` adds the second, more explicit hint of a failing check. With COURSE_STRICT_CHECKS=1 a
    failure raises."""
    from course.settings import get_settings
    from course.target import resolve_target

    settings = get_settings()
    if not settings.course_notebook_checks:
        print(f"check({objective if objective is not None else ''}) skipped: COURSE_NOTEBOOK_CHECKS=0")
        return True
    env = {**os.environ, "COURSE_TARGET": resolve_target(target)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "checks",
            *([] if objective is None else [str(objective)]),
            *(["--more-hints"] if more_hints else []),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    print(result.stdout.strip())
    if result.returncode not in (0, 1):
        print(result.stderr[-3000:], file=sys.stderr)
    passed = result.returncode == 0
    if settings.course_strict_checks and not passed:
        raise AssertionError(f"Objective {objective or 'progress'}: some checks failed (COURSE_STRICT_CHECKS is set).")
    return passed
