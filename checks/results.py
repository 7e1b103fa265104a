"""One result per check, one way to fold pytest's reports into it, one way to add results up.

Used by the learner CLI (`python -m checks`, in-process) and the class grader (`python -m grading`, from the JSON
lines its subprocess streams): both fold the records of checks.reporting.ResultStream with `fold()`, so a check
scores the same wherever it runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class CheckResult:
    nodeid: str
    title: str
    max_points: float  # the check's weight: @pytest.mark.points(n), default 1
    objective: int = 0
    outcome: str = "not run"  # passed | failed | error | skipped | not run
    points: float = 0.0  # earned: max_points when passed, else 0
    message: str = ""
    hint: str = ""
    more: str = ""  # the explicit second hint (--more-hints)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def record(self, when: str, outcome: str, *, message: str = "", hint: str = "", more: str = "") -> None:
        """Fold one phase's report (`when`: setup, call or teardown; `outcome`: passed, failed or skipped). The
        first failure stays — it is the one to fix; a failure outside the call is an error; only the call passes."""
        if self.outcome in ("failed", "error"):
            return
        if outcome == "failed":
            self.outcome = "failed" if when == "call" else "error"
            self.message, self.hint, self.more = message, hint, more
        elif outcome == "skipped":
            self.outcome = "skipped"
        elif when == "call":
            self.outcome = "passed"
        self.points = self.max_points if self.passed else 0.0


def fold(records: Iterable[dict]) -> list[CheckResult]:
    """ResultStream's records (in order) as one CheckResult per collected check; checks that never reported stay
    "not run". Records for checks that were not collected are ignored (a forged or stray line cannot add a check)."""
    checks: dict[str, CheckResult] = {}
    for record in records:
        if record.get("event") == "collected":
            checks[record["nodeid"]] = CheckResult(
                record["nodeid"], record["title"], float(record["points"]), int(record.get("objective", 0))
            )
        elif record.get("event") == "report" and record.get("nodeid") in checks:
            checks[record["nodeid"]].record(
                record["when"],
                record["outcome"],
                message=record.get("message", ""),
                hint=record.get("hint", ""),
                more=record.get("more", ""),
            )
    return list(checks.values())


def shown_message(message: str, max_lines: int = 30) -> str:
    """A failure message as a learner should read it: the whole message the check wrote (a plan, the SQL, the rows
    after the colon), without the exception's class name and without pytest's `assert …` re-evaluation lines that
    follow it; a message that is only such lines is kept as it is."""
    lines = message.strip().splitlines()
    if lines and lines[0].startswith("AssertionError: "):
        lines[0] = lines[0][len("AssertionError: ") :]
        for i, line in enumerate(lines[1:], start=1):
            if line.startswith("assert ") or line.startswith("+  where") or line.startswith(" +  where"):
                lines = lines[:i]
                break
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"… ({len(lines) - max_lines} more lines)"]
    return "\n".join(lines)


@dataclass(frozen=True)
class Totals:
    points: float
    max_points: float
    passed: int
    checks: int


def totals(results: Iterable[CheckResult]) -> Totals:
    results = list(results)
    return Totals(  # a parametrised check's cases share its points (1/3 each): fsum adds them without float dust
        points=math.fsum(r.points for r in results),
        max_points=math.fsum(r.max_points for r in results),
        passed=sum(r.passed for r in results),
        checks=len(results),
    )
