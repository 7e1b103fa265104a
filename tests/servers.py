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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def uvicorn_in_thread(app, log_level: str = "warning") -> Iterator[int]:
    """Serve `app` (lifespan on) on a free port until the block ends; yields the port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="on"))
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
