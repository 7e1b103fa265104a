"""Hints teach the concept and the API to look up, never the answer: no lab TODO and no check hint may contain a
line of the reference solution. The explicit second hint (`more=`) is only shown on request
(`python -m checks N --more-hints`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tools.release import region_lines, squash
from checks.__main__ import available

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 24  # characters of a reference line (whitespace removed) that may not appear in a hint


def reference_lines(objective: int) -> list[str]:
    """The code inside the objective's solution regions, one squashed line each (short lines and comments skipped)."""
    lines = []
    for path in sorted((ROOT / "solutions").glob(f"objective{objective}*")):
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for inside, line in region_lines(file):
                code = re.sub(r"^(return|await|async with|with|yield)\s+", "", line.strip())
                if inside and not code.startswith("#") and len(squash(code)) >= 16:
                    lines.append(squash(code))
    return lines


def lab_hints(objective: int) -> list[str]:
    hints = []
    for file in sorted((ROOT / "labs").glob(f"objective{objective}*")):
        for source in [file] if file.is_file() else sorted(file.rglob("*.py")):
            hints += [
                node.args[0].value.removeprefix("TODO: ")
                for node in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
                if isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "NotImplementedError"
                and node.args
                and str(getattr(node.args[0], "value", "")).startswith("TODO: ")
            ]
    return hints


def check_hints(objective: int) -> list[str]:
    tree = ast.parse((ROOT / f"checks/test_objective{objective}.py").read_text(encoding="utf-8"))
    hints = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "hint":
            hints += [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    return hints


def leaks(hint: str, code_lines: list[str]) -> list[str]:
    flat = squash(hint)
    return [
        line
        for line in code_lines
        if any(line[i : i + WINDOW] in flat for i in range(0, max(1, len(line) - WINDOW + 1)))
    ]


def test_no_hint_contains_a_line_of_the_reference():
    found = []
    for objective in available():
        code = reference_lines(objective)
        assert code, f"no solution regions found for objective {objective}"
        for hint in lab_hints(objective) + check_hints(objective):
            for line in leaks(hint, code):
                found.append(f"objective {objective}: {hint[:80]!r} contains {line[:60]!r}")
    assert not found, "\n".join(found)


def test_every_lab_todo_and_check_has_a_hint():
    for objective in available():
        assert lab_hints(objective), f"objective {objective} has no TODO hints"
        assert all(len(h) > 20 for h in lab_hints(objective) + check_hints(objective))
