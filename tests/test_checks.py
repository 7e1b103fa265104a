"""The learner CLI. (That every check passes on solutions/ and fails on the untouched labs/ is proven through the
grader, in test_grade.py, which runs every check of every objective both ways.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def test_learner_cli_prints_marks_hints_and_score():
    labs = subprocess.run([sys.executable, "-m", "checks", "1"], cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "COURSE_TARGET": "labs"}, timeout=600)
    assert labs.returncode == 1
    assert "❌" in labs.stdout and "hint:" in labs.stdout and "TODO" in labs.stdout
    assert "Score: 0/" in labs.stdout
    solutions = subprocess.run([sys.executable, "-m", "checks", "1", "--target", "solutions"], cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    assert solutions.returncode == 0, solutions.stdout
    assert "❌" not in solutions.stdout and "✅" in solutions.stdout
