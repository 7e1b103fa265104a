"""The checks can fail: every check passes on solutions/ and fails on the untouched labs/ — by an assertion or
NotImplementedError in the check itself, never by a collection, import or fixture error."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK_FILES = sorted((ROOT / "checks").glob("test_objective*.py"))


def run_checks(path: Path, target: str, tmp_path: Path) -> list[ET.Element]:
    report = tmp_path / f"{path.stem}-{target}.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(path), "--target", target, "-p", "no:nbval", "-q",
         f"--junitxml={report}", "-o", "junit_family=xunit1"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert report.exists(), f"pytest did not run:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    cases = ET.parse(report).getroot().iter("testcase")
    cases = list(cases)
    assert cases, f"no checks collected from {path.name}:\n{result.stdout[-2000:]}"
    return cases


@pytest.mark.parametrize("path", CHECK_FILES, ids=lambda p: p.stem)
def test_every_check_passes_on_the_solutions(path, tmp_path):
    cases = run_checks(path, "solutions", tmp_path)
    bad = [(c.get("name"), (f.get("message") or "")[:300]) for c in cases for f in c
           if f.tag in ("failure", "error", "skipped")]
    assert not bad, f"checks failing on the reference: {bad}"


@pytest.mark.parametrize("path", CHECK_FILES, ids=lambda p: p.stem)
def test_every_check_fails_on_the_untouched_labs(path, tmp_path):
    cases = run_checks(path, "labs", tmp_path)
    for case in cases:
        name = case.get("name")
        outcomes = [child for child in case if child.tag in ("failure", "error", "skipped")]
        assert outcomes, f"{name} passes on the untouched starter: a check that cannot fail is a defect"
        first = outcomes[0]
        assert first.tag == "failure", f"{name}: {first.tag} instead of a failure ({first.get('message')})"
        message = first.get("message") or ""
        assert message.startswith(("NotImplementedError", "AssertionError", "assert", "Failed: DID NOT RAISE")) or \
            "NotImplementedError" in (first.text or ""), f"{name} fails for the wrong reason: {message[:200]}"


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
