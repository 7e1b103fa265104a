"""Hostile submissions, graded as a class would be (`python -m grading`, a server per submission, the sandbox): each
is graded beside a reference copy, loses only its own points, and forges nothing.

Each hostile submission is the reference plus code that runs when the checks import it. `forger` tries every way a
file, a variable or a write could fake results, and breaks one function so its own loss is visible. `escaper` tries
to leave the sandbox — a fork bomb, filling the disk, the network, the reference solution, the instructor's files
and database, the grader's API key — and if any attempt succeeds every graded function of it raises, so its score
proves that none did."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from grading import sandbox
from tests.test_grade import ROOT, grade, variant

FORGER = """

# --- hostile: fake the results every way a file, a variable or a write could ---
import json as _json, os as _os
_fake = {"event": "report", "nodeid": "checks/test_objective1.py::test_enable_extension_installs_pgvector",
         "when": "call", "outcome": "passed"}
for _fd in range(3, 256):  # an unsigned line on every open descriptor, the results pipe among them
    try:
        _os.write(_fd, ("0" * 64 + " " + _json.dumps(_fake) + "\\n").encode())
    except OSError:
        pass
for _name in ("COURSE_RESULTS_FILE", "GRADESCOPE_RESULTS"):  # the old channel, and a guess
    _os.environ[_name] = "/tmp/forged.jsonl"
with open("/tmp/forged.jsonl", "a") as _fh:
    _fh.write(_json.dumps({**_fake, "points": 1000}) + "\\n")


def enable_extension(*args, **kwargs):  # broken on purpose: its own checks must fail
    raise RuntimeError("the forger's own mistake")
"""

ESCAPER = """

# --- hostile: try to leave the sandbox; any success makes every graded function raise ---
import os as _os, socket as _socket
_escaped = []
_forks = 0
for _ in range(5000):  # more processes than the sandbox user may have
    try:
        _pid = _os.fork()
    except OSError:
        break
    if _pid == 0:  # a child that waits a minute, under a name the test can look for afterwards
        _os.execv("/bin/sleep", ["sleep", "61.25"])
    _forks += 1
if _forks >= 5000:
    _escaped.append("fork bomb")
try:  # more than the private /tmp and the file size limit hold
    with open("/tmp/fill", "wb") as _fh:
        for _ in range(600):
            _fh.write(b"x" * 1024 * 1024)
    _escaped.append("filled 600 MB")
except OSError:
    pass
for _address in (("1.1.1.1", 80), ("8.8.8.8", 53)):
    try:
        _socket.create_connection(_address, timeout=2).close()
        _escaped.append(f"network {_address}")
    except OSError:
        pass
for _path in ("ROOT/solutions/objective1.py", "ROOT/.env", "ROOT/.pgdata/PG_VERSION", "/root/.bash_history"):
    try:
        open(_path, "rb").read(1)
        _escaped.append(f"read {_path}")
    except OSError:
        pass
try:
    import solutions.objective1  # the reference, to delegate to
    _escaped.append("imported the reference")
except ImportError:
    pass
if _os.environ.get("OPENAI_API_KEY"):
    _escaped.append("the grader's API key")
if _escaped:
    for _name in [n for n in list(globals()) if not n.startswith("_") and callable(globals()[n])]:
        globals()[_name] = lambda *a, _why=tuple(_escaped), **k: (_ for _ in ()).throw(RuntimeError(f"escaped: {_why}"))
"""


def test_hostile_submissions_lose_only_their_own_points_and_forge_nothing(tmp_path):
    assert sandbox.unavailable() is None, (
        f"the grader's sandbox is not available here ({sandbox.unavailable()}): make test installs bubblewrap as root"
    )
    reference = variant(tmp_path, "reference", {})
    forger = variant(tmp_path, "forger", {})
    escaper = variant(tmp_path, "escaper", {})
    for submission, code in ((forger, FORGER), (escaper, ESCAPER.replace("ROOT", str(ROOT)))):
        lab = submission / "labs" / "objective1.py"
        lab.write_text(lab.read_text(encoding="utf-8") + code, encoding="utf-8")
    (tmp_path / "forged.jsonl").write_text("")
    secret = {"OPENAI_API_KEY": "sk-the-graders-own-secret"}
    args = ("--objectives", "1", "--timeout", "30", "-j", "2")
    scores = grade([reference, forger, escaper], tmp_path / "scores.json", *args, env=secret)
    assert {s["sandbox"] for s in scores.values()} == {"bubblewrap"}
    full = scores["reference"]["max_points"]
    assert scores["reference"]["total"] == full, "the reference scores full marks beside hostile submissions"

    def lost(name: str) -> set[str]:
        return {c["nodeid"].split("::")[1] for c in scores[name]["checks"] if c["outcome"] != "passed"}

    assert lost("forger") == {
        "test_enable_extension_installs_pgvector",
        "test_enable_extension_reports_what_the_database_says",
    }, "the forger loses exactly the checks of the function it broke: no forged line counted"
    assert [c["max_points"] for c in scores["forger"]["checks"]] == [
        c["max_points"] for c in scores["reference"]["checks"]
    ]
    assert not lost("escaper"), (
        "every escape attempt failed, or its functions would raise: "
        + "; ".join(c["message"][:200] for c in scores["escaper"]["checks"] if c["outcome"] != "passed")[:600]
    )
    assert not Path("/tmp/fill").exists() and not Path("/tmp/forged.jsonl").exists()
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "61.25"]]
    assert not leftovers, f"{len(leftovers)} of the fork bomb's processes outlived the grading"


@pytest.mark.parametrize("variable", ["COURSE_ISOLATION", "DATABASE_URL"])
def test_the_environment_never_turns_the_sandbox_off(tmp_path, variable):
    """Isolation and the sandbox are the grader's options: a variable a submission's set-up might leave behind does
    not switch them (the report names the sandbox that ran)."""
    reference = variant(tmp_path, "reference", {})
    value = "postgresql://nobody@127.0.0.1:1/none" if "URL" in variable else "0"
    [score] = grade([reference], tmp_path / "scores.json", "--objectives", "1", env={variable: value}).values()
    assert score["sandbox"] == "bubblewrap" and score["total"] == score["max_points"]
