"""The one way pytest's reports become check results: `ResultStream`, a pytest plugin that emits one record per
collected check and one per test report, to a sink.

The learner CLI (checks.runner) runs the checks in-process with a list as the sink; the class grader (grading/)
loads this module with `-p checks.reporting`, and its module-level hooks append each record, flushed, to the file
named by $COURSE_RESULTS_FILE — so the results of the checks that ran survive a submission that hangs, is killed, or
crashes the interpreter. Either way the records are folded by checks.results.fold().
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

_OBJECTIVE = re.compile(r"test_objective(\d+)")


def check_info(item) -> dict:
    """What a check is worth and how to show it: nodeid, objective, title (docstring), points (marker, default 1)."""
    doc = (getattr(getattr(item, "function", None), "__doc__", None) or "").strip().splitlines()
    title = doc[0] if doc else item.name
    if "[" in item.name:  # the case of a parametrised check; ids a check left empty leave a leading "-"
        title += " [" + item.name.split("[", 1)[1].lstrip("-")
    points = item.get_closest_marker("points")
    match = _OBJECTIVE.search(item.nodeid)
    return {
        "nodeid": item.nodeid,
        "objective": int(match.group(1)) if match else 0,
        "title": title,
        "points": float(points.args[0]) if points else 1.0,
    }


def failure_message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.strip()
    return str(report.longrepr).strip().splitlines()[-1] if report.longrepr else "failed"


class ResultStream:
    """pytest plugin: `sink(record)` for every collected check and for every report that decides an outcome."""

    def __init__(self, sink: Callable[[dict], None]):
        self.sink = sink

    def pytest_collection_modifyitems(self, items):
        for item in items:
            self.sink({"event": "collected", **check_info(item)})

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.failed or report.skipped:
            props = dict(report.user_properties)
            failed = report.failed
            self.sink(
                {
                    "event": "report",
                    "nodeid": report.nodeid,
                    "when": report.when,
                    "outcome": report.outcome,
                    "message": failure_message(report) if failed else "",
                    "hint": props.get("hint", "") if failed else "",
                    "more": props.get("more", "") if failed else "",
                    "points": props.get("points"),
                }
            )


def _append_to_results_file(record: dict) -> None:
    path = os.environ.get("COURSE_RESULTS_FILE")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# `-p checks.reporting`: this module itself is the plugin, streaming to $COURSE_RESULTS_FILE
_file_stream = ResultStream(_append_to_results_file)
pytest_collection_modifyitems = _file_stream.pytest_collection_modifyitems
pytest_runtest_logreport = _file_stream.pytest_runtest_logreport
