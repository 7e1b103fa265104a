"""The one way pytest's reports become check results: `ResultStream`, a pytest plugin that emits one record per
collected check and one per test report, to a sink.

The learner CLI (checks.runner) runs the checks in-process with a list as the sink; the class grader (grading/)
loads this module with `-p checks.reporting`, which streams each record, signed, down a pipe as it happens — so the
results of the checks that ran survive a submission that hangs, is killed, or crashes the interpreter. Either way
the records are folded by checks.results.fold().
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
from collections import Counter
from collections.abc import Callable

_OBJECTIVE = re.compile(r"test_objective(\d+)")


def check_info(item, cases: int = 1) -> dict:
    """What a check is worth and how to show it: nodeid, objective, title (docstring), points. A check's points are
    its marker's (default 1) whatever its parametrisation: each of its `cases` is worth an equal share."""
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
        "points": (float(points.args[0]) if points else 1.0) / cases,
    }


def _function(item) -> tuple[str, str]:
    """The check a (possibly parametrised) test item is a case of."""
    return item.nodeid.split("::", 1)[0], getattr(item, "originalname", item.name)


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
        cases = Counter(_function(item) for item in items)
        for item in items:
            self.sink({"event": "collected", **check_info(item, cases[_function(item)])})

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


# `-p checks.reporting` (the class grader): this module is the plugin. The grader hands the process two pipe ends:
# one to read a key from (once, at start-up, before any submission code is imported; then closed) and one to write
# the records to, each signed with that key (HMAC-SHA256). A file or an environment variable a submission writes
# reaches nothing, and a line it writes to the pipe without the key is dropped by the grader.
def pytest_addoption(parser):
    group = parser.getgroup("course results")
    group.addoption("--course-results-fd", type=int, default=None, help="pipe the grader reads signed results from")
    group.addoption("--course-key-fd", type=int, default=None, help="pipe the grader sends the signing key on")


def pytest_configure(config):
    results_fd, key_fd = config.getoption("--course-results-fd"), config.getoption("--course-key-fd")
    if results_fd is None or key_fd is None:
        return
    with os.fdopen(key_fd, "rb") as pipe:
        key = pipe.read()

    def send(record: dict) -> None:
        payload = json.dumps(record).encode()
        line = hmac.new(key, payload, hashlib.sha256).hexdigest().encode() + b" " + payload + b"\n"
        os.write(results_fd, line)

    config.pluginmanager.register(ResultStream(send), "course-results")


def signed_records(data: bytes, key: bytes) -> list[dict]:
    """The records of a results stream whose signature checks out, in order (anything else is dropped)."""
    records = []
    for line in data.splitlines():
        signature, _, payload = line.partition(b" ")
        expected = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(signature, expected):
            with contextlib.suppress(ValueError):
                records.append(json.loads(payload))
    return records
