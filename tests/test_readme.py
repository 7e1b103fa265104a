"""The README's commands, as a reader types them: in a fresh shell (no activated venv, no course variables), from the
repository root. Every command the README shows names the interpreter it needs (`.venv/bin/python`, or a make
target that installs it): a bare `python -m course …` fails where the venv is not activated. The read-only ones are
run exactly as written."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

#: Commands the README shows that change nothing, so a test may run them as written.
READ_ONLY = [
    ".venv/bin/python -m course db status",
    ".venv/bin/python -m checks 1 --target solutions",
]


def readme_commands() -> list[str]:
    """Every command in the README: the lines of its bash blocks and its inline code that starts like one."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith(("curl", "-H", "#")) and not line.endswith("\\"):
                commands.append(line)
    commands += [span for span in re.findall(r"`([^`\n]+)`", README) if re.match(r"(\S+/)?python3? ", span)]
    return commands


def test_no_command_needs_an_activated_venv():
    bare = [c for c in readme_commands() if re.match(r"python3? ", c)]
    assert not bare, f"these fail in a fresh shell (no python on PATH, or not the course's): {bare}"


@pytest.mark.parametrize("command", READ_ONLY)
def test_a_read_only_command_runs_as_written_in_a_fresh_shell(command):
    assert command in README, f"the README no longer shows {command!r}: update READ_ONLY"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (
        f"{command}: exit {result.returncode}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    )


@pytest.mark.timeout(300)
def test_make_serve_then_the_readme_search_as_written():
    """`make serve` in a fresh shell (on a free port: 8000 may be taken on this machine), then the README's own curl
    command against the URL uvicorn prints; the answer is the one the README promises."""
    import json

    from course.corpus import available_corpus
    from tests.servers import FRESH_SHELL, make_serve

    block = re.search(r"```bash\n(curl -sg -X POST 'http://127\.0\.0\.1:8000/search.*?)```", README, flags=re.S)
    assert block, "the README's search example is gone: update this test"
    with make_serve(ROOT) as url:
        command = block.group(1).replace("http://127.0.0.1:8000", url)
        answer = subprocess.run(["bash", "-c", command], env=FRESH_SHELL, capture_output=True, text=True, timeout=60)
    results = json.loads(answer.stdout)["results"]
    assert all(r["metadata"]["topic"] == "ddl" for r in results), answer.stdout[:500]
    if available_corpus() == "postgres-docs":  # the README's promise is about the manual
        assert results and "Renaming a Column" in results[0]["metadata"]["section"], results[:1]
