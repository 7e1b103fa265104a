"""`make lab` as a learner meets it: JupyterLab on the repository root, notebook 01 beside labs/objective1.py,
editable through the browser's own API, changes picked up by a re-run cell, no first-run prompts.

The server is started exactly as `make lab` starts it (`python -m course lab`), on a scratch copy of notebooks/
and labs/ so that the test can write to labs/ without touching the learner's files."""

from __future__ import annotations

import os
import shutil
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from jupyter_client.manager import start_new_kernel

from course import lab
from tests.servers import free_port, headless_chromium
from checks.__main__ import available

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def workspace_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("learner")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copytree(ROOT / "labs", root / "labs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "jupytext.toml", root)  # keeps labs/*.py plain files: jupytext is installed for the sources
    for hidden in ("data", ".venv", ".pgdata", "__pycache__"):  # what a learner's checkout has beside the course
        (root / hidden).mkdir()
    return root


class Lab:
    """The running `make lab` server: its base URL, what it printed, and its runtime folder."""

    def __init__(self, base: str, output: list[str], runtime_dir: Path) -> None:
        self.base, self.output, self.runtime_dir = base, output, runtime_dir

    def printed_url(self) -> str:
        """The URL the server tells the learner to open (the last `http://127.0.0.1…?token=…` line it printed)."""
        urls = [m.group(0) for line in self.output for m in re.finditer(r"http://127\.0\.0\.1:\d+/\S*token=\S+", line)]
        assert urls, "the server printed no URL to open:\n" + "".join(self.output)[-3000:]
        return urls[-1]

    def token(self) -> str:
        return self.printed_url().rsplit("token=", 1)[1]


@pytest.fixture(scope="module")
def server(workspace_root, tmp_path_factory):
    """`python -m course lab --objective 1` on its own port, with the token it makes itself (as `make lab`);
    stopped (with its kernels) afterwards."""
    port = free_port()
    runtime_dir = tmp_path_factory.mktemp("rt")
    env = {**os.environ, "PYTHONPATH": str(workspace_root), "JUPYTER_RUNTIME_DIR": str(runtime_dir)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "course",
            "lab",
            "--objective",
            "1",
            "--root",
            str(workspace_root),
            "--workspaces-dir",
            str(tmp_path_factory.mktemp("ws")),
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []  # drained by a thread, so the server never blocks on a full pipe
    threading.Thread(target=lambda: output.extend(iter(process.stdout.readline, "")), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    lab = Lab(base, output, runtime_dir)
    while not any(f"{base}/" in line and "token=" in line for line in output):  # its own token, as make lab prints
        assert process.poll() is None, "JupyterLab exited: " + "".join(output)[-3000:]
        assert time.monotonic() < deadline, "JupyterLab did not print its URL in 90 s"
        time.sleep(0.2)
    while True:
        try:
            if httpx.get(f"{base}/api/status", params={"token": lab.token()}, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "JupyterLab did not answer in 90 s"
        time.sleep(0.3)
    yield lab
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)


def api(server: Lab) -> httpx.Client:
    return httpx.Client(base_url=server.base, headers={"Authorization": f"token {server.token()}"}, timeout=30)


def test_workspace_layout_for_every_objective():
    """`make lab OBJ=N` opens objective N's notebook beside the file the learner edits."""
    for n in available():
        data = lab.workspace(n)["data"]
        dock = data["layout-restorer:data"]["main"]["dock"]
        widgets = [area["widgets"][0] for area in dock["children"]]
        assert widgets[0].startswith(f"notebook:notebooks/{n:02d}_") and widgets[0].endswith(".ipynb")
        editors = dock["children"][1]["widgets"]
        assert editors == [f"editor:labs/objective{n}.py"] or (
            editors and all(e.startswith(f"editor:labs/objective{n}/") and e.endswith(".py") for e in editors)
        ), editors
        for widget in [widgets[0], *editors]:
            assert (ROOT / data[widget]["data"]["path"]).is_file()
    package = lab.workspace(6)["data"]["layout-restorer:data"]["main"]["dock"]["children"][1]["widgets"]
    assert package == ["editor:labs/objective6/embedding_client.py", "editor:labs/objective6/service.py"], (
        "a package objective opens its modules in the order its notebook builds them"
    )


def test_root_shows_the_course_and_hides_the_machinery(server):
    with api(server) as client:
        listing = {item["name"] for item in client.get("/api/contents").json()["content"]}
    assert {"notebooks", "labs"} <= listing, listing
    assert not listing & {"data", ".venv", ".pgdata", "__pycache__"}, f"machinery is visible: {listing}"


def test_lab_file_can_be_read_written_and_read_back(server, workspace_root):
    with api(server) as client:
        notebook = client.get("/api/contents/notebooks/01_setup.ipynb")
        assert notebook.status_code == 200 and notebook.json()["type"] == "notebook"
        original = client.get("/api/contents/labs/objective1.py").json()
        assert original["type"] == "file" and "async def enable_extension" in original["content"]
        edited = original["content"] + "\n# saved from JupyterLab\n"
        saved = client.put(
            "/api/contents/labs/objective1.py", json={"type": "file", "format": "text", "content": edited}
        )
        assert saved.status_code == 200, saved.text
        assert client.get("/api/contents/labs/objective1.py").json()["content"] == edited
        assert (workspace_root / "labs/objective1.py").read_text() == edited
        client.put(
            "/api/contents/labs/objective1.py", json={"type": "file", "format": "text", "content": original["content"]}
        )


def test_no_first_run_prompts(server):
    """The course's own settings answer the news prompt (it appears while fetchNews is 'none')."""
    with api(server) as client:
        settings = client.get("/lab/api/settings/@jupyterlab/apputils-extension:notification").json()
    assert settings["settings"]["fetchNews"] == "false" and settings["settings"]["checkForUpdates"] is False


def test_saved_lab_code_is_picked_up_by_a_rerun_cell(server, workspace_root):
    """Autoreload, end to end: a kernel like the notebook's imports labs.objective1, the file is saved through
    JupyterLab's contents API, and re-running a cell sees the new code without restarting the kernel."""
    env = {**os.environ, "PYTHONPATH": str(workspace_root)}
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(workspace_root / "notebooks"), env=env)
    try:

        def run(code: str) -> str:
            out: list[str] = []

            def collect(msg):
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append("\n".join(msg["content"]["traceback"]))

            client.execute_interactive(code, output_hook=collect, timeout=60)
            return "".join(out)

        first = run(
            "%load_ext autoreload\n%autoreload 2\nfrom course.target import load_objective\n"
            "obj = load_objective(1)\nprint(obj.__file__, obj.count_by_dimension.__doc__.split()[0])"
        )
        assert str(workspace_root / "labs") in first, first
        with api(server) as http:
            source = http.get("/api/contents/labs/objective1.py").json()["content"]
            changed = source.replace('"""How many rows of `embeddings`', '"""Edited: how many rows of `embeddings`', 1)
            assert changed != source
            time.sleep(1.1)  # a new modification time, as a person's save a moment later would have
            http.put("/api/contents/labs/objective1.py", json={"type": "file", "format": "text", "content": changed})
            try:
                assert run("print(obj.count_by_dimension.__doc__.split()[0])").strip() == "Edited:"
            finally:
                http.put("/api/contents/labs/objective1.py", json={"type": "file", "format": "text", "content": source})
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_every_door_lands_on_the_objectives_workspace(server):
    """What a learner's browser opens: the URL the server prints, the browser-open file it writes (what `make lab`
    hands the browser), and `/` all land on objective 1's workspace, not an empty Launcher."""
    printed = server.printed_url()
    assert "/lab/workspaces/objective1?" in printed, f"the server tells the learner to open {printed}"
    (open_file,) = server.runtime_dir.glob("jpserver-*-open.html")
    assert "/lab/workspaces/objective1?token=" in open_file.read_text(), open_file.read_text()
    root = httpx.get(f"{server.base}/", params={"token": server.token()}, follow_redirects=False, timeout=10)
    assert root.status_code in (301, 302) and "/lab/workspaces/objective1" in root.headers["location"], root.headers


def test_chromium_shows_the_notebook_beside_the_lab_file(server, tmp_path):
    """Headless Chromium opens exactly the URL the server printed, as the learner would."""
    flags = headless_chromium(tmp_path / "profile", "--window-size=1400,850", "--virtual-time-budget=30000")
    url = server.printed_url()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    tabs = [part.split("<", 1)[0] for part in dom.split('lm-TabBar-tabLabel">')[1:]]
    assert "01_setup.ipynb" in tabs and "objective1.py" in tabs, f"open tabs at {url}: {tabs}"
    assert "Objective 1 — pgvector setup" in dom, "the notebook's content is rendered"
    assert "enable_extension" in dom and "lab-fingerprint" in dom, "the lab file's content is rendered in the editor"
    assert "official Jupyter news" not in dom
    screenshot = tmp_path / "lab.png"
    subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
    assert screenshot.stat().st_size > 20_000, "the page rendered something"
