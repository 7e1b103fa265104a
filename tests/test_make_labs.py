"""tools/make_labs.py: regions become NotImplementedError, staleness is detected, edited labs are kept."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tools.make_labs import MarkerError, main, strip_solutions

ROOT = Path(__file__).resolve().parent.parent

SOURCE = '''"""Module doc."""
import math

def area(r: float) -> float:
    """Area of a circle."""
    # BEGIN SOLUTION hint: use math.pi * r ** 2 and say "why"
    return math.pi * r ** 2
    # END SOLUTION

class Shape:
    def name(self) -> str:
        """Doc."""
        # BEGIN SOLUTION
        return "shape"
        # END SOLUTION
'''


def test_regions_are_replaced_keeping_signatures_and_docstrings():
    out = strip_solutions(SOURCE)
    assert "math.pi * r ** 2\n" not in out and 'return "shape"' not in out
    assert """raise NotImplementedError('TODO: use math.pi * r ** 2 and say "why"')""" in out, "quoted as ruff would"
    assert '        raise NotImplementedError("TODO: implement this")' in out, "indentation follows the marker"
    tree = ast.parse(out)
    assert ast.get_docstring(tree.body[2]) == "Area of a circle."
    namespace: dict = {}
    exec(compile(out, "lab", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="TODO: use math.pi"):
        namespace["area"](1.0)


def test_a_long_hint_continues_on_indented_comment_lines_and_the_lab_stays_formatted():
    words = " ".join(["word"] * 40)
    source = f"""def f():
    # BEGIN SOLUTION hint: first part,
    #   {words}
    # a comment of the reference, not of the hint
    return 1
    # END SOLUTION
"""
    out = strip_solutions(source)
    message = f"TODO: first part, {words}"
    wrapped = f'def f():\n    raise NotImplementedError(\n        "{message}"\n    )\n'
    assert out == wrapped, "laid out as ruff format would"
    assert "reference" not in out


def test_starter_regions_give_importable_code():
    source = """class Model:
    # BEGIN SOLUTION starter
    # starter: name = "TODO"  # add the other fields
    name = "full"
    size = 3
    # END SOLUTION
"""
    out = strip_solutions(source)
    assert out == 'class Model:\n    name = "TODO"  # add the other fields\n'


@pytest.mark.parametrize(
    "bad", ["# BEGIN SOLUTION\nx = 1\n", "# END SOLUTION\n", "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n"]
)
def test_broken_markers_are_reported(bad):
    with pytest.raises(MarkerError):
        strip_solutions(bad)


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    solutions, labs = tmp_path / "solutions", tmp_path / "labs"
    solutions.mkdir()
    (solutions / "__init__.py").write_text("")
    (solutions / "objective9.py").write_text(SOURCE)
    return solutions, labs


def test_check_fails_when_stale_and_edited_labs_are_kept(tmp_path, capsys):
    solutions, labs = _tree(tmp_path)
    args = ["--solutions", str(solutions), "--labs", str(labs)]
    assert main(args + ["--check"]) == 1, "missing labs are stale"
    assert main(args) == 0
    assert main(args + ["--check"]) == 0
    lab = labs / "objective9.py"
    # the solution changes: --check notices, regeneration updates the untouched lab
    (solutions / "objective9.py").write_text(SOURCE.replace("Area of a circle.", "Circle area."))
    assert main(args + ["--check"]) == 1
    main(args)
    assert "Circle area." in lab.read_text()
    # the learner edits the lab: regeneration keeps it, --force overwrites it
    lab.write_text(lab.read_text().replace("raise NotImplementedError('TODO: use", "return 0  # mine\n    # ("))
    (solutions / "objective9.py").write_text(SOURCE)
    main(args)
    assert "# mine" in lab.read_text(), "an edited lab is never overwritten without --force"
    assert "has been edited" in capsys.readouterr().err
    main(args + ["--force"])
    assert "# mine" not in lab.read_text()


def test_repository_labs_are_up_to_date():
    result = subprocess.run([sys.executable, "tools/make_labs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
