"""The target switch: notebooks and checks run the learner's code (labs/) or the reference (solutions/).

COURSE_TARGET=labs (default) | solutions. The checks' `--target` option overrides it for one run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from course.settings import get_settings

TARGETS = ("labs", "solutions")


def resolve_target(target: str | None = None) -> str:
    """The one place the target is decided: the explicit choice (`--target`, an argument), else COURSE_TARGET, else
    labs. Every caller (notebooks, the learner CLI, the checks' fixture) asks here."""
    target = target or get_settings().course_target
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}: use labs or solutions.")
    return target


def load_objective(number: int, target: str | None = None) -> ModuleType:
    """Import `<target>.objective<number>` (labs by default), e.g. `obj = load_objective(1)`."""
    return importlib.import_module(f"{resolve_target(target)}.objective{number}")
