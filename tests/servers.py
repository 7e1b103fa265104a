"""Real servers for the tests: a free port on 127.0.0.1, and an ASGI app under uvicorn in a thread."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from course.web.serve import SERVER_OPTIONS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def uvicorn_in_thread(app, log_level: str = "warning") -> Iterator[int]:
    """Serve `app` (lifespan on) on a free port until the block ends; yields the port."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="on", **SERVER_OPTIONS)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:  # uvicorn sets this once the socket is bound and the lifespan has run
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


#: The environment of a fresh shell: no activated venv, no course variables (add what a test sets on purpose).
FRESH_SHELL = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@contextlib.contextmanager
def make_serve(root: Path, **env: str) -> Iterator[str]:
    """`make serve` as the README says, in a fresh shell (plus `env`), on a free port; yields the URL uvicorn prints,
    and stops the server (its whole process group) afterwards."""
    import os
    import re
    import signal
    import subprocess

    shell = {**FRESH_SHELL, "HOME": os.environ.get("HOME", "/root"), **env}
    server = subprocess.Popen(
        ["bash", "-c", f"make serve PORT={free_port()}"],
        cwd=root,
        env=shell,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline, printed = time.monotonic() + 300, []
        while not any("Uvicorn running on http://127.0.0.1:" in line for line in printed):
            assert server.poll() is None and time.monotonic() < deadline, "make serve did not start:\n" + "".join(
                printed
            )
            printed.append(server.stdout.readline())
        yield re.search(r"http://127\.0\.0\.1:\d+", next(line for line in printed if "Uvicorn running" in line))[0]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def headless_chromium(profile: Path, *flags: str) -> list[str]:
    """The command line of Debian's Chromium, headless and quiet, with a profile of its own, then `flags`."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed for this test (make test installs it: apt-get install chromium)"
    quiet = ["--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update"]
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        *quiet,
        "--disable-sync",
        f"--user-data-dir={profile}",
        *flags,
    ]
