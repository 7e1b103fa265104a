"""AUTHORING.md's promise, proved: an objective is added by creating its files and editing nothing else.

A throw-away objective 7 (a reference with a marked region, its checks, two mutants and a notebook source) is written
into a copy of the repository's tracked files; the generators make its lab and notebook, the learner CLI lists it by
its TITLE and grades it both ways (the reference passes, the untouched lab fails with its hint), and the mutation
suite kills its mutants, which meet the two-per-graded-function rule; VS Code's task asks for the objective, so it
needs no edit either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

NEW_FILES = {
    "solutions/objective7.py": '''"""Objective 7 — word statistics (throw-away, written by tests/test_authoring.py)."""

from __future__ import annotations


def word_count(text: str) -> int:
    """Words in `text`: runs of characters between whitespace."""
    # BEGIN SOLUTION hint: split on any whitespace and count the parts
    return len(text.split())
    # END SOLUTION
''',
    "checks/test_objective7.py": '''"""Checks for Objective 7 — word statistics."""

from __future__ import annotations

import pytest

from checks.support import objective

#: The objective's name in `make check` and grade reports (read from this line, not imported).
TITLE = "word statistics"
lab = objective(7)


@pytest.mark.hint("Tabs, newlines and runs of spaces separate words too.")
def test_word_count_splits_on_any_whitespace(lab):
    """word_count() counts words separated by any whitespace"""
    assert lab.word_count("a  b\\tc\\nd") == 4
    assert lab.word_count("") == 0
''',
    "tests/mutants/objective7.toml": """[[mutant]]
id = "o7-split-on-one-space"
expect = "test_word_count_splits_on_any_whitespace"
reason = "splits on single spaces: tabs and runs of spaces miscount"
find = '''return len(text.split())'''
replace = '''return len(text.split(" "))'''

[[mutant]]
id = "o7-count-spaces"
expect = "test_word_count_splits_on_any_whitespace"
reason = "counts the spaces plus one: an empty text has one word"
find = '''return len(text.split())'''
replace = '''return text.count(" ") + 1'''
""",
    "tools/notebooks/07_words.py": """# %% [markdown]
# # Objective 7 — word statistics

# %%
from course.target import load_objective
obj = load_objective(7)
obj.word_count("hello world")
""",
}


def _tracked_copy(dst: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dst / name)


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the repository's history to list its files")
def test_an_objective_is_added_by_creating_files_only(tmp_path):
    repo = tmp_path / "course"
    _tracked_copy(repo)
    before = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    for name, text in NEW_FILES.items():
        (repo / name).write_text(text, encoding="utf-8")
    # the copy's packages first (the venv's .pth points at the working tree), the course database for nothing
    env = {**os.environ, "PYTHONPATH": str(repo), "COURSE_TARGET": "labs"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600)

    try:
        assert run("tools/make_labs.py").returncode == 0
        lab = (repo / "labs/objective7.py").read_text(encoding="utf-8")
        assert "NotImplementedError" in lab and "text.split()" not in lab, (
            "the lab is the reference with its region cut"
        )
        assert run("tools/notebooks/build.py").returncode == 0 and (repo / "notebooks/07_words.ipynb").exists()

        reference = run("-m", "checks", "7", "--target", "solutions")
        assert reference.returncode == 0, reference.stdout + reference.stderr
        assert "Objective 7 — word statistics" in reference.stdout, "the title comes from the checks' TITLE line"
        starter = run("-m", "checks", "7")
        assert starter.returncode == 1 and "Tabs, newlines and runs of spaces" in starter.stdout, starter.stdout

        mutants = run("-m", "tests.mutants", "--objective", "7", "-j", "1")
        assert mutants.returncode == 0 and "mutants killed: 2/2" in mutants.stdout, mutants.stdout + mutants.stderr
        rule = run("-m", "pytest", "tests/test_mutants.py", "-p", "no:nbval", "-q", "-k", "two_mutants or expected")
        assert rule.returncode == 0, "the new objective meets the two-mutants rule:\n" + rule.stdout[-2000:]
    finally:
        run("-m", "course", "db", "stop")  # the copy started a server of its own (its .pgdata): leave none behind

    generated = {Path("labs/objective7.py"), Path("notebooks/07_words.ipynb")}
    changed = [p for p, data in before.items() if (repo / p).read_bytes() != data]
    added = {p.relative_to(repo) for p in repo.rglob("*") if p.is_file() and "__pycache__" not in p.parts} - set(before)
    assert changed == [], f"adding an objective edited existing files: {changed}"
    assert added - {Path(n) for n in NEW_FILES} - generated <= {p for p in added if p.parts[0] in {".pgdata", "data"}}


def test_jupyterlab_opens_a_notebook_source_as_a_notebook_and_a_lab_as_a_file(tmp_path):
    """AUTHORING.md's "Open With → Notebook": through JupyterLab's contents API (what its editors load), a source in
    tools/notebooks/ is a notebook with the cells build.py writes, while labs/*.py stay Python files."""
    import json
    import time

    import httpx
    import nbformat

    from tests.servers import free_port

    port, token = free_port(), "authoring-test"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "server",
            f"--ServerApp.root_dir={ROOT}",
            f"--port={port}",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", params={"token": token}, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, process.stdout.read()[-2000:]
                try:
                    if client.get("/api/status").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the Jupyter server did not start in 60 s"
                time.sleep(0.3)
            source = client.get("/api/contents/tools/notebooks/01_setup.py").json()
            assert source["type"] == "notebook", "jupytext serves the source as a notebook"
            built = nbformat.reads((ROOT / "notebooks/01_setup.ipynb").read_text(encoding="utf-8"), as_version=4)
            assert [c["source"].strip() for c in source["content"]["cells"]] == [c.source for c in built.cells]
            lab = client.get("/api/contents/labs/objective1.py").json()
            assert lab["type"] == "file" and "def enable_extension" in lab["content"], json.dumps(lab)[:300]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
        process.wait(timeout=30)
