"""Run one objective's checks in-process and fold a result per check (the learner CLI; `check(N)` in notebooks)."""

from __future__ import annotations

import contextlib
import functools
import io
from pathlib import Path

import pytest

from checks.reporting import ResultStream
from checks.results import CheckResult, fold

CHECKS_DIR = Path(__file__).resolve().parent


def run_checks(
    objective: int, target: str | None = None, extra_args: list[str] | None = None, quiet: bool = True
) -> list[CheckResult]:
    path = CHECKS_DIR / f"test_objective{objective}.py"
    if not path.exists():
        raise SystemExit(f"There are no checks for objective {objective} ({path.name} not found).")
    args = [str(path), "-p", "no:cacheprovider", "-p", "no:nbval", "-q", "--tb=short"]
    if target:
        args += ["--target", target]
    args += extra_args or []
    records: list[dict] = []
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        code = pytest.main(args, plugins=[ResultStream(records.append)])
    results = fold(records)
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not results:
        raise RuntimeError(f"pytest could not run the checks (exit {int(code)}):\n{out.getvalue()[-3000:]}")
    return results


@functools.cache
def declared_points(objective: int) -> float:
    """What an objective's checks are worth in all, from their markers (collected, not run): the maximum a report
    needs for a submission that could not be graded at all."""
    records: list[dict] = []
    args = [str(CHECKS_DIR / f"test_objective{objective}.py"), "--collect-only", "-q", "-p", "no:cacheprovider"]
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([*args, "-p", "no:nbval"], plugins=[ResultStream(records.append)])
    return float(sum(r.max_points for r in fold(records)))
