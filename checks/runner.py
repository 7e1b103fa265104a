"""Run one objective's checks in-process and collect a result per check (used by the CLI and the grader)."""

from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from checks.reporting import check_info, failure_message
from checks.results import CheckResult

CHECKS_DIR = Path(__file__).resolve().parent


@dataclass
class Collector:
    """A pytest plugin that keeps one CheckResult per test, whatever phase failed."""

    results: dict[str, CheckResult] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)

    def pytest_collection_modifyitems(self, items):
        for item in items:
            self.info[item.nodeid] = check_info(item)

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        result = self.results.get(report.nodeid)
        if result is None:
            info = self.info.get(report.nodeid, {"title": report.nodeid.split("::")[-1], "points": 1.0})
            result = self.results[report.nodeid] = CheckResult(
                report.nodeid, info["title"], float(props.get("points", info["points"]))
            )
        outcome = "failed" if report.failed else "skipped" if report.skipped else "passed"
        result.record(
            report.when,
            outcome,
            message=failure_message(report) if report.failed else "",
            hint=props.get("hint", ""),
            more=props.get("more", ""),
        )


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
    collector = Collector()
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        code = pytest.main(args, plugins=[collector])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not collector.results:
        raise RuntimeError(f"pytest could not run the checks (exit {int(code)}):\n{out.getvalue()[-3000:]}")
    results = list(collector.results.values())
    for result in results:
        result.objective = objective
    return results


@functools.cache
def declared_points(objective: int) -> float:
    """What an objective's checks are worth in all, from their markers (collected, not run): the maximum a report
    needs for a submission that could not be graded at all."""
    collector = Collector()
    args = [str(CHECKS_DIR / f"test_objective{objective}.py"), "--collect-only", "-q", "-p", "no:cacheprovider"]
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([*args, "-p", "no:nbval"], plugins=[collector])
    return float(sum(info["points"] for info in collector.info.values()))
