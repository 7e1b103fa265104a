"""Run one objective's checks in-process and collect a result per check (used by the CLI and the grader)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from checks.reporting import check_info, failure_message

CHECKS_DIR = Path(__file__).resolve().parent


@dataclass
class CheckResult:
    nodeid: str
    title: str
    outcome: str  # passed | failed | error | skipped
    points: float
    message: str = ""
    hint: str = ""
    more: str = ""  # the explicit second hint

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


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
        current = self.results.get(report.nodeid)
        if current is not None and current.outcome in ("failed", "error"):
            return  # the first failure (setup, call or teardown) is the one the learner needs to see
        if report.failed:
            outcome = "failed" if report.when == "call" else "error"
        elif report.skipped:
            outcome = "skipped"
        elif report.when == "call":
            outcome = "passed"
        else:
            return
        info = self.info.get(report.nodeid, {"title": report.nodeid.split("::")[-1], "points": 1.0})
        self.results[report.nodeid] = CheckResult(
            nodeid=report.nodeid,
            title=info["title"],
            outcome=outcome,
            points=float(props.get("points", info["points"])),
            message=failure_message(report) if report.failed else "",
            hint=props.get("hint", "") if report.failed else "",
            more=props.get("more", "") if report.failed else "",
        )


def run_checks(objective: int, target: str | None = None, extra_args: list[str] | None = None, quiet: bool = True) -> list[CheckResult]:
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
    return list(collector.results.values())
