"""The target switch: notebooks and checks run the learner's code (labs/) or the reference (solutions/).

COURSE_TARGET=labs (default) | solutions. The checks' `--target` option overrides it for one run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from course.settings import get_settings

TARGETS = ("labs", "solutions")


def load_objective(number: int, target: str | None = None) -> ModuleType:
    """Import `<target>.objective<number>` (labs by default), e.g. `obj = load_objective(1)`."""
    target = target or get_settings().course_target
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}: use labs or solutions.")
    return importlib.import_module(f"{target}.objective{number}")
