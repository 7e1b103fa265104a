"""A pytest plugin that runs some checks first: `COURSE_RUN_FIRST=test_a,test_b` (function names).

The mutation suite (`-p tests.mutants.ordering`) uses it with pytest's stop-at-first-failure (-x): each mutant's
expected check runs first, so a killed mutant costs one check, not every check before it in the file. The set of
checks is unchanged; only their order is (stable otherwise)."""

from __future__ import annotations

import os


def pytest_collection_modifyitems(items):
    first = {name for name in os.environ.get("COURSE_RUN_FIRST", "").split(",") if name}
    if first:
        items.sort(key=lambda item: 0 if getattr(item, "originalname", item.name) in first else 1)
