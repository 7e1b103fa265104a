"""Shared fixtures and reporting for the learner checks.

* `--target labs|solutions` (default COURSE_TARGET, else labs) chooses whose code is graded.
* Every check runs against its own freshly created database, dropped afterwards, so checks cannot affect each
  other (or the course database).
* `@pytest.mark.hint("...", more="...")` is shown with a failure: the concept and what to look up; the explicit
  `more` text only on request (`python -m checks N --more-hints`). `@pytest.mark.points(n)` weights a check.
"""

from __future__ import annotations

import pytest

from course import database
from course.target import TARGETS, resolve_target


def pytest_addoption(parser):
    parser.addoption("--target", choices=TARGETS, default=None, help="grade labs/ (default) or solutions/")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "hint(text, more=None): shown when the check fails; `more` only with --more-hints"
    )
    config.addinivalue_line("markers", "points(n): weight of the check in the score (default 1)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        marker = item.get_closest_marker("hint")
        if marker:
            report.user_properties.append(("hint", marker.args[0]))
            report.sections.append(("Hint", marker.args[0]))
            if marker.kwargs.get("more"):  # the explicit second hint, shown on request (--more-hints)
                report.user_properties.append(("more", marker.kwargs["more"]))
    marker = item.get_closest_marker("points")
    report.user_properties.append(("points", marker.args[0] if marker else 1))
    return report


@pytest.fixture(scope="session")
def target(request) -> str:
    return resolve_target(request.config.getoption("--target"))


@pytest.fixture
def db_url():
    """URL of a brand-new, empty database (no extensions), dropped after the check."""
    with database.temporary_database("check") as url:
        yield url


@pytest.fixture
async def conn(db_url):
    """An asyncpg connection to the check's own database (jsonb as dicts)."""
    connection = await database.connect(db_url)
    try:
        yield connection
    finally:
        await connection.close()


def pytest_make_parametrize_id(config, val, argname):
    """Readable case names in the learner's report: '[NaN]', not '[vector2-NaN]'. Long values are summarised;
    an empty id (a check's own choice) leaves only the words that describe the case."""
    import json

    if val == "":
        return None
    if isinstance(val, (dict, list)):
        text = json.dumps(val) if len(json.dumps(val, default=str)) <= 40 else f"{type(val).__name__} of {len(val)}"
        return text
    if isinstance(val, str):
        return val if len(val) <= 40 else val[:37] + "…"
    return None
