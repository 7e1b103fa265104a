"""The instructor's side: the student release carries no solution text and grades itself on GitHub Classroom, and the
grader writes Gradescope's and GitHub Classroom's formats. (`make test` also runs the release's own `make test`.)"""

from __future__ import annotations

import base64
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tools import release
from checks.__main__ import available

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return release.build(tmp_path_factory.mktemp("release") / "student")


def test_the_release_is_the_course_without_the_reference(student):
    assert not (student / "solutions").exists() and not (student / "tools").exists() and not (student / ".git").exists()
    assert (student / "labs" / "objective1.py").is_file() and (student / "notebooks" / "01_setup.ipynb").is_file()
    assert release.leaks(student, release.reference_lines()) == []
    shipped = {p.name for p in (student / "tests").glob("*.py")}
    assert shipped == set(release.SHIPPED_TESTS)
    for test in (student / "tests").glob("*.py"):  # nothing shipped may need what stayed behind
        text = test.read_text()
        assert "import solutions" not in text and "from solutions" not in text and "from tools" not in text, test.name
    readme = (student / "README.md").read_text()
    assert "solutions/" not in readme and "For instructors" not in readme and "## Start" in readme
    for absent in ("-m bench", "schemathesis", "COURSE_TARGET=solutions", "tests/test_service_contract", "tools/"):
        assert absent not in readme, f"the release README mentions {absent!r}, which the release does not ship"
    makefile = (student / "Makefile").read_text()
    assert (
        "solutions" not in makefile
        and "tests.mutants" not in makefile
        and "--target $(or $(COURSE_TARGET),labs)" in makefile
    )
    recipe = "\ntest: install browser\n\t$(PY) -m course setup\n"
    recipe += "\t$(PY) -m pytest tests -p no:nbval -n 2\n"
    assert recipe in makefile


def test_solution_text_anywhere_stops_the_release(tmp_path, monkeypatch):
    fake = tmp_path / "course"
    shutil.copytree(
        ROOT, fake, ignore=shutil.ignore_patterns(".venv", ".pgdata", "data", ".git", "__pycache__", ".notebook-runs")
    )
    line = next(l for l in (ROOT / "solutions/objective1.py").read_text().splitlines() if "math.isfinite(x)" in l)
    with (fake / "labs" / "objective1.py").open("a") as fh:
        fh.write(f"\n# a learner would not see this, but the release would ship it:\n{line}\n")
    monkeypatch.setattr(release, "ROOT", fake)
    monkeypatch.setattr(release, "generated_are_current", lambda: [])  # as if regenerated: the leak check must catch it
    with pytest.raises(SystemExit, match="solution text"):
        release.build(tmp_path / "out", force=True)
    assert not (tmp_path / "out").exists(), "nothing is written when the release would leak"


def test_a_notebook_is_read_as_a_notebook_and_stale_files_stop_the_release(tmp_path, monkeypatch):
    """A line of the reference in a notebook's saved traceback or cell (JSON-escaped in the file) is found; and a
    release from a tree whose labs/ no longer match solutions/ is refused before anything is copied."""
    import json

    line = next(l for l in (ROOT / "solutions/objective1.py").read_text().splitlines() if "math.isfinite(x)" in l)
    folder = tmp_path / "rel" / "notebooks"
    folder.mkdir(parents=True)
    traceback = [f"\x1b[0;32m----> 3\x1b[0m {line}", "NameError: name 'x' is not defined"]
    cells = [
        {"cell_type": "code", "source": ["check(1)\n"], "outputs": [{"output_type": "error", "traceback": traceback}]}
    ]
    (folder / "01.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    found = release.leaks(tmp_path / "rel", release.reference_lines())
    assert found and "01.ipynb" in found[0], found
    fake = tmp_path / "course"
    shutil.copytree(
        ROOT, fake, ignore=shutil.ignore_patterns(".venv", ".pgdata", "data", ".git", "__pycache__", ".notebook-runs")
    )
    source = fake / "solutions" / "objective1.py"
    source.write_text(
        source.read_text().replace('"""Return `vector` as a list', '"""Edited: return `vector` as a list')
    )
    monkeypatch.setattr(release, "ROOT", fake)
    with pytest.raises(SystemExit, match="stale generated files"):
        release.build(tmp_path / "out2", force=True)
    assert not (tmp_path / "out2").exists()


def test_the_classroom_workflow_is_a_valid_github_workflow(student):
    workflow = student / ".github/workflows/classroom.yml"
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    steps = yaml.safe_load(workflow.read_text())["jobs"]["run-autograding-tests"]["steps"]
    reporter = next(
        s for s in steps if s.get("uses", "").startswith("classroom-resources/autograding-grading-reporter")
    )
    runners = reporter["with"]["runners"].split(",")
    assert runners == [f"objective{n}" for n in available()]
    assert set(reporter["env"]) == {f"OBJECTIVE{n}_RESULTS" for n in available()}
    assert any(".venv/bin/python -m grading . --format classroom" in s.get("run", "") for s in steps)


@pytest.fixture(scope="module")
def graded_reference(tmp_path_factory) -> Path:
    submission = tmp_path_factory.mktemp("submission") / "alice"
    shutil.copytree(ROOT / "solutions", submission / "labs", ignore=shutil.ignore_patterns("__pycache__"))
    path = submission / "labs" / "objective1.py"  # one mistake: NaN passes validation
    path.write_text(path.read_text().replace("if not math.isfinite(x)", "if math.isinf(x)", 1))
    return submission


def test_gradescope_results_follow_the_documented_shape(graded_reference, tmp_path):
    out = tmp_path / "results.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grading",
            str(graded_reference),
            "--objectives",
            "1",
            "--format",
            "gradescope",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    results = json.loads(out.read_text())
    jsonschema.validate(results, json.loads((ROOT / "tests/schemas/gradescope-results.schema.json").read_text()))
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert failed and all(t["score"] == 0 and "Hint:" in t["output"] for t in failed)
    scored = math.fsum(t["score"] for t in results["tests"])  # a parametrised check's cases share its points
    assert results["score"] == pytest.approx(scored) and scored < math.fsum(t["max_score"] for t in results["tests"])
    assert "same code as the reference" in results["output"]


def test_classroom_outputs_are_what_the_reporter_reads(graded_reference, tmp_path):
    outputs, summary = tmp_path / "outputs", tmp_path / "summary.md"
    env = {**__import__("os").environ, "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grading",
            str(graded_reference),
            "--objectives",
            "1,5",
            "--format",
            "classroom",
            "--out",
            str(tmp_path / "grade.json"),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    runners = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert set(runners) == {"objective1", "objective5"}
    scores = json.loads((tmp_path / "grade.json").read_text())["submissions"][0]
    for name, encoded in runners.items():
        payload = json.loads(base64.b64decode(encoded))
        # what autograding-grading-reporter does with it: points = sum of test scores, out of max_score
        part = scores["objectives"][name.removeprefix("objective")]
        assert payload["version"] == 1 and payload["max_score"] == part["max_points"]
        assert math.fsum(t["score"] for t in payload["tests"]) == pytest.approx(part["points"])
        assert all(
            t["status"] in ("pass", "fail") and set(t) >= {"name", "message", "line_no"} for t in payload["tests"]
        )
    assert json.loads(base64.b64decode(runners["objective1"]))["status"] == "fail"
    assert json.loads(base64.b64decode(runners["objective5"]))["status"] == "pass"
    assert "| **total** |" in summary.read_text()


def test_an_ungradable_repository_gets_zero_with_a_message_in_classroom(tmp_path):
    """A repository with no labs/ (or one that crashes before any check): every objective's output is there, worth
    its declared points and scoring 0 with the reason, so the reporter never meets a missing output."""
    import os

    repo = tmp_path / "student-repo"
    (repo / "notes").mkdir(parents=True)
    outputs = tmp_path / "outputs"
    env = {**os.environ, "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    subprocess.run(
        [sys.executable, "-m", "grading", str(repo), "--objectives", "1,3", "--format", "classroom",
         "--out", str(tmp_path / "grade.json")],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    runners = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert set(runners) == {"objective1", "objective3"}
    for encoded in runners.values():
        payload = json.loads(base64.b64decode(encoded))
        assert payload["status"] == "fail" and payload["max_score"] > 0
        assert sum(t["score"] for t in payload["tests"]) == 0
        assert "neither a labs/ folder" in payload["tests"][0]["message"]


def test_pinned_classroom_grading_ignores_the_students_own_checks(student, tmp_path):
    """A student who edits checks/ so that every check passes: with --checks-from the workflow grades with the
    instructor's checks (a second checkout) and the starter's true score comes out; the workflow's own steps are
    simulated in order (the two checkouts as copies, setup-python and make install as this .venv), then the grade
    step's command runs as written, restricted to one objective to keep the test short. (The instructor's course
    is the module's release; the student's is built pinned.)"""
    import os

    instructor, student = student, tmp_path / "student"
    pin = ["--checks-from", "teacher/pgvector-course@0123abc"]
    subprocess.run([sys.executable, "tools/release.py", str(student), *pin], cwd=ROOT, check=True, timeout=300)
    for check in (student / "checks").glob("test_objective*.py"):  # the student's edit: every check passes
        check.write_text('"""mine"""\n\n\ndef test_everything_is_fine():\n    """all good"""\n')
    steps = yaml.safe_load((student / ".github/workflows/classroom.yml").read_text())["jobs"]["run-autograding-tests"][
        "steps"
    ]
    checkouts = [s for s in steps if s.get("uses", "").startswith("actions/checkout")]
    assert [c["with"]["path"] for c in checkouts] == ["submission", "course"]
    assert checkouts[1]["with"]["repository"] == "teacher/pgvector-course" and checkouts[1]["with"]["ref"] == "0123abc"
    work = tmp_path / "work"
    shutil.copytree(student, work / "submission")
    shutil.copytree(instructor, work / "course", ignore=shutil.ignore_patterns(".venv", ".pgdata", "data"))
    (work / "course" / ".venv").symlink_to(ROOT / ".venv")
    grade_step = next(s for s in steps if s.get("id") == "grade")
    outputs = tmp_path / "outputs"
    env = {**os.environ, "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    subprocess.run(
        ["bash", "-c", grade_step["run"] + " --objectives 1"],
        cwd=work / grade_step["working-directory"],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    results = {
        name: json.loads(base64.b64decode(value))
        for name, value in (line.split("=", 1) for line in outputs.read_text().splitlines())
    }
    assert set(results) == {"objective1"}
    for payload in results.values():
        assert payload["status"] == "fail" and sum(t["score"] for t in payload["tests"]) == 0
        assert len(payload["tests"]) > 1, "the instructor's checks ran, not the student's one stub"
