"""The mutation suite's own rules (the suite itself runs in `make test` as `python -m tests.mutants`)."""

from __future__ import annotations

import ast
import re

from tests.mutants.__main__ import SOLUTIONS, load_mutants
from checks.__main__ import available

#: Graded parts with fewer than two mutants, and why.
ONE_MUTANT_IS_ENOUGH = {
    "get_repository": "a one-line constructor; its one plausible mistake (a session of its own) is a mutant",
}


def graded_parts() -> dict[tuple[str, str], tuple[int, int]]:
    """(file, function or class) -> line range, for every definition that holds a BEGIN SOLUTION region."""
    parts = {}
    for path in sorted(SOLUTIONS.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        regions = [i + 1 for i, line in enumerate(lines) if re.match(r"\s*# BEGIN SOLUTION", line)]
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = [r for r in regions if node.lineno <= r <= node.end_lineno]
                children = [
                    n for n in ast.iter_child_nodes(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                ]
                if inner and not any(c.lineno <= r <= c.end_lineno for c in children for r in inner):
                    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    parts[(path.relative_to(SOLUTIONS).as_posix(), node.name)] = (start, node.end_lineno)
    return parts


def test_enough_mutants_with_reasons():
    mutants = load_mutants()  # also checks: unique ids, a reason each, `find` occurs exactly once
    assert len(mutants) >= 60
    assert {m.objective for m in mutants} == set(available()), "every objective has mutants"


def test_every_graded_part_has_two_mutants():
    mutants = load_mutants()
    counts = {part: 0 for part in graded_parts()}
    for mutant in mutants:
        source = (SOLUTIONS / mutant.file).read_text(encoding="utf-8")
        line = source[: source.index(mutant.find)].count("\n") + 1
        for (file, name), (start, end) in graded_parts().items():
            if file == mutant.file and start <= line <= end:
                counts[(file, name)] += 1
    thin = {name: n for (_, name), n in counts.items() if n < (1 if name in ONE_MUTANT_IS_ENOUGH else 2)}
    assert not thin, f"graded parts with too few mutants: {thin}"


def test_each_expected_killer_is_a_check_of_that_objective():
    from pathlib import Path

    checks = {
        n: (Path(__file__).parent.parent / f"checks/test_objective{n}.py").read_text(encoding="utf-8")
        for n in available()
    }
    for mutant in load_mutants():
        assert mutant.expect, f"{mutant.id}: name the check meant to kill it (expect = ...)"
        assert re.search(rf"^(async )?def {mutant.expect}\(", checks[mutant.objective], re.M), (
            f"{mutant.id}: no check {mutant.expect} in checks/test_objective{mutant.objective}.py"
        )


def test_a_grading_that_runs_no_check_is_broken_not_a_kill(monkeypatch, tmp_path):
    """If the grader itself fails (no check ran), every mutant would look killed: the suite must say broken."""
    import grading.grade
    from tests.mutants import __main__ as suite

    mutant = load_mutants()[0]
    failed = grading.grade.SubmissionScore(name="x", path="x", error="the checks ended abnormally (exit 4)")
    monkeypatch.setattr(grading.grade, "grade_submission", lambda *args, **kwargs: failed)
    outcome, why, _ = suite.grade(mutant, tmp_path)
    assert (outcome, why) == ("broken", "the checks ended abnormally (exit 4)")


def test_forked_grading_gives_what_a_new_interpreter_gives(tmp_path):
    """The suite grades in processes forked from a preloaded server: the same scores as a fresh interpreter's."""
    import shutil

    from grading.grade import grade_submission, run_process
    from tests.mutants.forked import run_forked

    shutil.copytree(SOLUTIONS, tmp_path / "labs", ignore=shutil.ignore_patterns("__pycache__"))
    lab = tmp_path / "labs" / "objective3.py"
    lab.write_text(lab.read_text(encoding="utf-8").replace("return 1.0 - distance", "return distance", 1))
    scores = [grade_submission(tmp_path, objectives=[3], run=run) for run in (run_process, run_forked)]
    assert [s.error for s in scores] == [None, None]
    assert [(c.nodeid, c.outcome) for c in scores[0].checks] == [(c.nodeid, c.outcome) for c in scores[1].checks]
    assert 0 < scores[1].total < scores[1].max_points
