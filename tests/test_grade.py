"""The instructor grader: full marks for the reference with every output format, and broken submissions scored
correctly without affecting one another (each on a server of its own)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from checks.__main__ import available


ROOT = Path(__file__).resolve().parent.parent


def variant(base: Path, name: str, edits: dict[str, tuple[str, str]]) -> Path:
    """A copy of the reference as a learner's labs folder, with text replacements per file."""
    target = base / name / "labs"
    shutil.copytree(ROOT / "solutions", target, ignore=shutil.ignore_patterns("__pycache__"))
    for file, (old, new) in edits.items():
        path = target / file
        text = path.read_text()
        assert old in text, f"{old!r} not in {file}"
        path.write_text(text.replace(old, new, 1))
    return target.parent


def grade(paths: list[Path], out: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    """`python -m grading PATHS --out OUT EXTRA...` as an instructor runs it (with `env` added to the environment);
    the scores by submission name."""
    result = subprocess.run(
        [sys.executable, "-m", "grading", *map(str, paths), "--out", str(out), *extra],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {s["name"]: s for s in json.loads(out.read_text())["submissions"]}


@pytest.mark.timeout(400)  # every objective of the reference, with every output format
def test_reference_scores_full_marks_with_every_output(tmp_path):
    """On the shared server (--isolation shared, as with DATABASE_URL), with per-submission databases. (That every
    check fails on the untouched starter, with a hint and for the right reason, is tests/test_starter.py.)"""
    reference = variant(tmp_path, "reference", {})
    scores = grade(
        [reference],
        tmp_path / "scores.json",
        "--csv",
        str(tmp_path / "s.csv"),
        "--junit",
        str(tmp_path / "junit"),
        "--isolation",
        "shared",
    )
    ref = scores["reference"]
    assert {int(n) for n in ref["objectives"]} == set(available())
    failing = [(c["nodeid"], c["message"][:200]) for c in ref["checks"] if c["outcome"] != "passed"]
    assert not failing and ref["total"] == ref["max_points"] > 0, failing
    rows = {r["submission"]: r for r in csv.DictReader((tmp_path / "s.csv").open())}
    assert float(rows["reference"]["total"]) == ref["max_points"]
    junit = (tmp_path / "junit" / "reference.xml").read_text()
    assert junit.count("<testcase") == len(ref["checks"]) and "<failure" not in junit
    # a copy of the reference scores full marks, and is flagged for a person to look at
    assert len(ref["similar"]) >= 20 and all("reference" in f["same_as"] for f in ref["similar"])
    assert int(rows["reference"]["same_code_as_reference"]) == len(ref["similar"])

    from grading.grade import _db_prefix
    from course import database

    # this submission's prefix only: other tests (the mutation suite's own test) grade on the same server meanwhile
    with psycopg.connect(database.libpq_url()) as conn:
        pattern = _db_prefix(reference).replace("_", "\\_") + "%"
        leftovers = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", [pattern]).fetchone()[0]
    assert leftovers == 0, "every submission's databases are dropped"


def points_of(score: dict, fragment: str) -> float:
    return sum(c["max_points"] for c in score["checks"] if fragment in c["nodeid"])


@pytest.mark.timeout(400)  # grades eight submissions, then one again: ~70 s alone, more beside other workers
def test_broken_submissions_cost_only_their_own_points(tmp_path):
    subs = [
        variant(tmp_path, "reference", {}),
        variant(
            tmp_path,
            "hanging",
            {
                "objective1.py": (
                    '    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")\n',
                    "    import asyncio\n    await asyncio.sleep(3600)\n",
                )
            },
        ),
        variant(
            tmp_path,
            "syntax_error",
            {"objective3.py": ("def top_k_sql(metric: str) -> str:", "def top_k_sql(metric: str) -> str\n")},
        ),
        variant(
            tmp_path,
            "drops_table",
            {
                "objective3.py": (
                    "    vector = validate_search(",
                    '    await db.execute("DROP TABLE embeddings")\n    vector = validate_search(',
                )
            },
        ),
        variant(
            tmp_path,
            "wrong_operator",
            {"objective3.py": ('OPERATORS = {"cosine": "<=>"', 'OPERATORS = {"cosine": "<->"')},
        ),
        variant(
            tmp_path,
            "crashes",
            {
                "objective1.py": (
                    "    rows = await conn.fetch(\n",
                    "    import os\n    os._exit(3)\n    rows = await conn.fetch(\n",
                )
            },
        ),
        variant(
            tmp_path,
            "hogs_connections",
            {
                "objective1.py": (  # holds every connection its server allows
                    '    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")\n',
                    "    import sys, threading, time, psycopg\n    from course import database as _database\n"
                    "    def hog(url=_database.libpq_url(), held=[]):  # takes every connection that frees up\n"
                    "        while True:\n            try:\n                held.append(psycopg.connect(url))\n"
                    "            except psycopg.OperationalError:\n                time.sleep(0.005)\n"
                    '    if not sys.__dict__.get("_hog"):\n'
                    "        sys._hog = threading.Thread(target=hog, daemon=True)\n        sys._hog.start()\n"
                    '        time.sleep(2)\n    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")\n',
                )
            },
        ),
    ]
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "test_objective1_hidden.py").write_text(
        "import pytest\nfrom checks.support import objective\nlab = objective(1)\n\n"
        "@pytest.mark.points(5)\n@pytest.mark.hint('dimensions is a parameter')\n"
        'def test_two_dimensional_vectors(lab):\n    """hidden: validate_embedding honours dimensions"""\n'
        "    assert lab.validate_embedding([1, 2], dimensions=2) == [1.0, 2.0]\n"
    )
    args = ("--objectives", "1,3", "-j", "2", "--timeout", "5", "--hidden", str(hidden))
    scores = grade(subs, tmp_path / "scores.json", *args)
    full = scores["reference"]["max_points"]
    assert scores["reference"]["total"] == full, "the reference scores full marks next to broken submissions"
    assert points_of(scores["reference"], "test_objective1_hidden.py") == 5, "hidden checks count, with their points"

    hanging = scores["hanging"]
    hung = [c for c in hanging["checks"] if c["outcome"] != "passed"]
    assert {c["nodeid"].split("::")[1] for c in hung} == {
        "test_enable_extension_installs_pgvector",
        "test_enable_extension_reports_what_the_database_says",
    }
    assert all("Timeout" in c["message"] for c in hung) and hanging["total"] == full - sum(
        c["max_points"] for c in hung
    )

    syntax = scores["syntax_error"]
    assert (
        syntax["objectives"]["3"]["points"] == 0
        and syntax["objectives"]["1"]["points"] == scores["reference"]["objectives"]["1"]["points"]
    )
    assert all(
        "SyntaxError" in c["message"] or "expected ':'" in c["message"]
        for c in syntax["checks"]
        if "objective3" in c["nodeid"]
    )

    dropped = scores["drops_table"]
    assert dropped["objectives"]["1"]["points"] == scores["reference"]["objectives"]["1"]["points"]
    assert 0 < dropped["objectives"]["3"]["points"] < scores["reference"]["objectives"]["3"]["points"]

    wrong = scores["wrong_operator"]
    lost = {c["nodeid"].split("::")[1] for c in wrong["checks"] if c["outcome"] != "passed"}
    assert "test_ranking_and_similarity_match_numpy[cosine]" in lost
    assert "test_ranking_and_similarity_match_numpy[l2]" not in lost, "only the cosine checks should fail"

    crashed = scores["crashes"]
    assert crashed["error"] and 0 < crashed["total"] < full
    assert any(c["outcome"] == "not run" for c in crashed["checks"])

    hog = scores["hogs_connections"]
    assert hog["total"] < full, "the submission that took every connection loses its own points"
    assert all(s["server_seconds"] > 0 for s in scores.values()), "each submission had a server of its own"

    again = grade([subs[4]], tmp_path / "again.json", *args)
    assert again["wrong_operator"]["total"] == wrong["total"], "a rerun gives the same scores"

    import psutil

    dirs = [s["server_dir"] for s in scores.values()]
    assert all(dirs) and not any(Path(d).exists() for d in dirs), "each server's data is deleted"
    servers = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and any(d in part for d in dirs for part in p.info["cmdline"])
    ]
    assert not servers, f"every submission's server is stopped and deleted, even after a crash or a hang: {servers}"


def test_a_missing_submission_is_an_error_and_keeps_the_old_scores(tmp_path):
    scores = tmp_path / "scores.json"
    scores.write_text('{"kept": true}')
    result = subprocess.run(
        [sys.executable, "-m", "grading", str(tmp_path / "no-such-folder"), "--out", str(scores)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "no such submission" in result.stderr
    assert scores.read_text() == '{"kept": true}'


def test_an_upload_of_loose_files_is_graded_as_itself_and_names_must_differ(tmp_path):
    """A folder holding only objective1.py (no __init__.py, as a drag-and-drop upload arrives) is graded as itself,
    not as the course's starter; DATABASE_URL in the environment does not turn a server per submission off; two
    submissions with one name are refused."""
    upload = tmp_path / "upload"
    upload.mkdir()
    shutil.copy(ROOT / "solutions" / "objective1.py", upload / "objective1.py")
    nowhere = {"DATABASE_URL": "postgresql://nobody:nothing@127.0.0.1:9/none"}  # a server that is not there
    [score] = grade([upload], tmp_path / "s.json", "--objectives", "1", env=nowhere).values()
    assert score["total"] == score["max_points"] > 0, [(c["title"], c["message"][:100]) for c in score["checks"]]
    twin = tmp_path / "other" / "upload"
    twin.mkdir(parents=True)
    refused = subprocess.run(
        [sys.executable, "-m", "grading", str(upload), str(twin), "--out", str(tmp_path / "t.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "named upload" in refused.stderr, refused.stderr
    assert not (tmp_path / "t.json").exists()


def test_hidden_checks_stay_hidden_from_students(tmp_path):
    """Gradescope: a hidden check is `after_published`, named by number only, without output; a submission that
    quotes the hidden check's source in a visible failure has that output withheld. Classroom: the same names."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    secret_line = "assert lab.validate_embedding([3, 4], dimensions=2) == [3.0, 4.0]  # secret-case"
    (hidden / "test_objective1_extra.py").write_text(
        "from checks.support import objective\nlab = objective(1)\n\n"
        'def test_secret_two_dimensions(lab):\n    """the secret case of validate_embedding"""\n'
        f"    {secret_line}\n"
    )
    quoting = variant(
        tmp_path,
        "quoting",
        {
            "objective1.py": (
                "    values = [float(x) for x in vector]\n",
                "    import glob, pathlib\n"
                "    leak = ''.join(pathlib.Path(p).read_text() for p in glob.glob('checks/test_objective1_*.py'))\n"
                "    raise ValueError('leak: ' + leak)\n",
            )
        },
    )
    out = tmp_path / "gs.json"
    result = subprocess.run(
        [sys.executable, "-m", "grading", str(quoting), "--objectives", "1", "--hidden", str(hidden),
         "--format", "gradescope", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    text = json.dumps(report)
    assert "secret-case" not in text and "test_secret_two_dimensions" not in text and "the secret case" not in text
    hidden_tests = [t for t in report["tests"] if "instructor check" in t["name"]]
    assert len(hidden_tests) == 1 and hidden_tests[0]["visibility"] == "after_published"
    assert hidden_tests[0]["output"] == ""
    assert any(t["output"].startswith("(output withheld") for t in report["tests"]), "the quoting failure is withheld"
