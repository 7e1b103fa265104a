"""The Gradescope autograder as Gradescope runs it: the zip `make gradescope` builds, unpacked into a simulated
/autograder tree, its `run_autograder` run on a drag-and-drop upload (loose objective*.py files), and the
results.json it leaves checked against Gradescope's documented shape. (`setup.sh` installs Python and the lock
from the network; here the tree borrows this checkout's installed .venv instead.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent

HIDDEN_CHECK = '''
from checks.support import objective

lab = objective(1)


def test_a_hidden_instructor_check(lab):
    """a check only the instructor wrote"""
    assert lab.validate_embedding([3.0, 4.0], dimensions=2) == [3.0, 4.0]
'''


def test_run_autograder_grades_an_upload_in_a_simulated_autograder_tree(tmp_path):
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "test_objective1_hidden.py").write_text(HIDDEN_CHECK)
    archive = tmp_path / "autograder.zip"
    subprocess.run(
        [sys.executable, "tools/gradescope.py", str(archive), "--hidden", str(hidden), "--objectives", "1,2"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    root = tmp_path / "autograder"
    with zipfile.ZipFile(archive) as bundle:
        names = bundle.namelist()
        assert {"setup.sh", "run_autograder"} <= set(names)
        assert not any(n.startswith("source/solutions/") for n in names), "the reference never ships"
        assert "source/hidden/test_objective1_hidden.py" in names
        assert "uv pip install --python .venv/bin/python -r requirements.lock" in bundle.read("setup.sh").decode()
        bundle.extractall(root)
    for script in ("setup.sh", "run_autograder"):
        (root / script).chmod(0o755)
    (root / "source" / ".venv").symlink_to(ROOT / ".venv")  # what setup.sh would have installed
    upload = root / "submission"
    upload.mkdir()
    shutil.copy(ROOT / "solutions" / "objective1.py", upload / "objective1.py")  # a drag-and-drop upload
    (root / "results").mkdir()
    result = subprocess.run(
        [str(root / "run_autograder")],
        env={**os.environ, "AUTOGRADER_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    schema = json.loads((ROOT / "tests/schemas/gradescope-results.schema.json").read_text())
    jsonschema.validate(results, schema)
    hidden_tests = [t for t in results["tests"] if "instructor check" in t["name"]]
    objective1 = [t for t in results["tests"] if t["name"].startswith("Objective 1:") and t not in hidden_tests]
    assert objective1 and all(t["status"] == "passed" for t in objective1), [t["name"] for t in objective1][:5]
    assert hidden_tests and all(t["visibility"] == "after_published" and not t.get("output") for t in hidden_tests)
    assert all(t["status"] == "passed" for t in hidden_tests), "the hidden check ran on the upload"
    others = [t for t in results["tests"] if t not in objective1 and t not in hidden_tests]
    assert others and all(t["name"].startswith("Objective 2:") for t in others), "the assignment: objectives 1 and 2"
    assert all(t["status"] == "failed" and t["score"] == 0 for t in others), "objective 2 was not uploaded"
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"])) and results["score"] > 0
