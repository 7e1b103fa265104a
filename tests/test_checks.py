"""The learner CLI. (That every check passes on solutions/ and fails on the untouched labs/ is proven through the
grader, in test_grade.py, which runs every check of every objective both ways.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def test_learner_cli_prints_marks_hints_and_score():
    labs = subprocess.run(
        [sys.executable, "-m", "checks", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "COURSE_TARGET": "labs"},
        timeout=600,
    )
    assert labs.returncode == 1
    assert "❌" in labs.stdout and "hint:" in labs.stdout and "TODO" in labs.stdout
    assert "Score: 0/" in labs.stdout
    assert "more:" not in labs.stdout and "make check OBJ=1 MORE=1" in labs.stdout, (
        "the explicit hint waits until asked for"
    )
    more = subprocess.run(
        [sys.executable, "-m", "checks", "1", "--more-hints"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "COURSE_TARGET": "labs"},
        timeout=600,
    )
    assert "more: CREATE EXTENSION IF NOT EXISTS vector" in more.stdout
    solutions = subprocess.run(
        [sys.executable, "-m", "checks", "1", "--target", "solutions"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert solutions.returncode == 0, solutions.stdout
    assert "❌" not in solutions.stdout and "✅" in solutions.stdout


def test_progress_table_over_the_assigned_objectives():
    """`python -m checks` with no objective: one line per objective assigned (COURSE_OBJECTIVES), then the first
    unfinished one's failures. (Every check on the starter is graded by tests/test_starter.py; two objectives here.)"""
    from checks.__main__ import titles

    assigned = [1, 5]
    env = {**__import__("os").environ, "COURSE_TARGET": "labs", "COURSE_OBJECTIVES": ",".join(map(str, assigned))}
    labs = subprocess.run(
        [sys.executable, "-m", "checks"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=900
    )
    assert labs.returncode == 1, labs.stdout + labs.stderr
    table = labs.stdout.split("\n\n")[1]
    rows = [line for line in table.splitlines() if line.strip()[:1] in "❌✅…"]
    assert [row.split()[1] for row in rows] == [str(n) for n in assigned]
    assert all(titles()[n] in row for n, row in zip(assigned, rows)), "each row names its objective"
    assert all(" 0/" in row for row in rows), table
    assert "Next: objective 1" in labs.stdout and "hint:" in labs.stdout and "Objective 2 —" not in labs.stdout


def test_progress_when_everything_passes(monkeypatch, capsys):
    """The all-green branch (that solutions/ really passes everything is proven in test_grade.py)."""
    import checks.__main__ as cli
    from checks.results import CheckResult

    monkeypatch.setattr(
        cli, "run_checks", lambda n, target: [CheckResult(f"c{n}", f"check {n}", 2.0, n, "passed", 2.0)]
    )
    assert cli.main(["--target", "solutions"]) == 0
    out = capsys.readouterr().out
    assert "Every check passes" in out and "❌" not in out and "12/12" in out


def test_vscode_tasks_offer_every_objective():
    """Codespaces / VS Code learners get the same loop: a task that asks for the objective (so a new objective needs
    no edit here), one for their progress, the .venv interpreter, the files open."""
    import json

    config = json.loads((ROOT / ".vscode/tasks.json").read_text())
    by_label = {t["label"]: t for t in config["tasks"]}
    task = by_label["check objective N"]
    assert task["args"] == ["-m", "checks", "${input:objective}"] and task["command"].endswith(".venv/bin/python")
    assert [i["id"] for i in config["inputs"]] == ["objective"]
    assert by_label["check my progress"]["args"] == ["-m", "checks"]
    settings = json.loads((ROOT / ".vscode/settings.json").read_text())
    assert settings["python.defaultInterpreterPath"].endswith(".venv/bin/python")
    devcontainer = json.loads((ROOT / ".devcontainer/devcontainer.json").read_text())
    opened = devcontainer["customizations"]["codespaces"]["openFiles"]
    assert opened == ["notebooks/01_setup.ipynb", "labs/objective1.py"] and all((ROOT / f).is_file() for f in opened)
