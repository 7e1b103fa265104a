"""Copy flags (grading/similarity.py) survive the edits that hide a copy — renamed variables, reformatting, comments,
a no-op statement in every function — and stay silent for an untouched starter and for different work."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from grading.similarity import flag_copies

ROOT = Path(__file__).resolve().parent.parent


def _disguised(source: str) -> str:
    """The reference with every local renamed, a no-op statement added at the top of every function, and its layout
    changed (ast.unparse drops comments and reformats)."""
    tree = ast.parse(source)

    class Disguise(ast.NodeTransformer):
        def visit_FunctionDef(self, node):
            self.generic_visit(node)
            names = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)} - {"self", "cls"}
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name) and inner.id in names:
                    inner.id = f"my_{inner.id}"
                elif isinstance(inner, ast.arg) and inner.arg in names:
                    inner.arg = f"my_{inner.arg}"
            node.body.insert(0, ast.parse("_unused = len('padding')").body[0])
            return node

        visit_AsyncFunctionDef = visit_FunctionDef

    return ast.unparse(Disguise().visit(tree))


def test_a_disguised_copy_is_flagged_and_the_starter_is_not(tmp_path):
    copy = tmp_path / "copy" / "labs"
    shutil.copytree(ROOT / "solutions", copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*.py"):
        path.write_text(_disguised(path.read_text(encoding="utf-8")), encoding="utf-8")
    starter = tmp_path / "starter" / "labs"
    shutil.copytree(ROOT / "labs", starter, ignore=shutil.ignore_patterns("__pycache__"))
    flags = flag_copies({"copy": copy, "starter": starter})
    assert len(flags["copy"]) >= 20, f"only {len(flags['copy'])} disguised functions were recognised"
    assert all("reference" in flag["same_as"] for flag in flags["copy"])
    assert flags["starter"] == [], "an untouched starter is not work, and not a copy"


def test_different_work_is_not_flagged(tmp_path):
    """Two submissions that each wrote one function their own way: neither is like the reference or the other."""
    base = tmp_path / "one" / "labs"
    shutil.copytree(ROOT / "labs", base, ignore=shutil.ignore_patterns("__pycache__"))
    other = tmp_path / "two" / "labs"
    shutil.copytree(ROOT / "labs", other, ignore=shutil.ignore_patterns("__pycache__"))
    path, name = "objective1.py", "validate_embedding"
    assert f"def {name}(" in (ROOT / "solutions" / path).read_text()
    mine = """
def validate_embedding(vector, dimensions=1536):
    import math
    values = []
    for position, item in enumerate(vector):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError(f"item {position} is not a number")
        number = float(item)
        if math.isnan(number) or math.isinf(number):
            raise ValueError(f"item {position} is not finite")
        values.append(number)
    if len(values) != dimensions:
        raise ValueError(f"expected {dimensions} numbers, got {len(values)}")
    return values
"""
    theirs = """
def validate_embedding(vector, dimensions=1536):
    import numpy
    try:
        array = numpy.asarray(list(vector), dtype=numpy.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"not a list of numbers: {error}") from None
    if array.ndim != 1 or array.shape[0] != dimensions:
        raise ValueError(f"the vector must have {dimensions} values, it has shape {array.shape}")
    if not numpy.isfinite(array).all():
        raise ValueError("the vector holds NaN or infinity")
    return array.tolist()
"""
    for folder, code in ((base, mine), (other, theirs)):
        file = folder / path
        file.write_text(file.read_text(encoding="utf-8") + "\n" + code, encoding="utf-8")
    flags = flag_copies({"one": base, "two": other})
    assert not [f for f in flags["one"] + flags["two"] if name in f["function"]], flags
