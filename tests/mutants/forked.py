"""Grading processes forked from a preloaded server, for the mutation suite: ~1 s less per graded mutant than a new
interpreter, with the same scores (tests/test_mutants.py proves it). A grading.grade Runner."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

#: What a forked grading process finds imported already: third-party packages and the course runtime's database
#: layer (~1 s of imports per process otherwise). Never labs/ or solutions/, and nothing that reads settings on import.
PRELOAD = [
    "numpy",
    "pandas",
    "asyncpg",
    "psycopg",
    "sqlalchemy.ext.asyncio",
    "fastapi",
    "httpx",
    "pytest",
    "pytest_asyncio",
    "pgvector.asyncpg",
    "course.database",
]
_fork_lock = threading.Lock()


class _InheritedFd:
    """A file descriptor handed to the forked child (multiprocessing sends it to the fork server at start())."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        from multiprocessing.reduction import DupFd

        return (_received_fd, (self.fd, DupFd(self.fd)))


def _received_fd(number: int, duplicate) -> tuple[int, int]:
    return number, duplicate.detach()


def run_forked(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    *,
    pass_fds: tuple[int, ...] = (),
    preexec_fn=None,
) -> tuple[int, str, bool]:
    """`grading.grade.run_process` for `python -m pytest ...`, forked from multiprocessing's fork server
    (single-threaded, with `PRELOAD` imported) instead of a new interpreter. The child takes the command's
    environment, directory and session as a new process would; its output goes to a file."""
    import multiprocessing

    assert command[1:3] == ["-m", "pytest"], command
    context = multiprocessing.get_context("forkserver")
    output = cwd / "pytest-output.txt"
    with _fork_lock:  # the fork server starts once, with the preload list set first
        context.set_forkserver_preload(PRELOAD)
        fds = [_InheritedFd(fd) for fd in pass_fds]
        child = context.Process(target=_pytest_child, args=(command[3:], str(cwd), env, str(output), fds))
        child.start()
    child.join(timeout)
    finished = not child.is_alive()
    if not finished:
        with contextlib.suppress(ProcessLookupError):
            if child.pid is not None:  # started, so it has one
                os.killpg(child.pid, signal.SIGKILL)
        child.join()
    text = output.read_text(encoding="utf-8", errors="replace") if output.exists() else ""
    return child.exitcode if child.exitcode is not None else -9, text, finished


def _pytest_child(args: list[str], cwd: str, env: dict[str, str], output: str, fds=()) -> None:
    """In the forked process: become what `python -m pytest args` started with `env` in `cwd` would be; the parent's
    `fds` (pairs of the number the command names and the number received here) are renamed in the arguments."""
    renamed = {str(number): str(received) for number, received in fds}
    args = [renamed.get(a, a) if i and args[i - 1].endswith("-fd") else a for i, a in enumerate(args)]
    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # `python -m` puts the directory first, then PYTHONPATH; the grader's own `checks` package (imported to run this
    # function) must give way to the copy of the checks in `cwd`, as in a new interpreter
    sys.path[:0] = [cwd, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    for name in [m for m in sys.modules if m == "checks" or m.startswith("checks.")]:
        del sys.modules[name]
    sys.dont_write_bytecode = env.get("PYTHONDONTWRITEBYTECODE") == "1"
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from course.settings import get_settings

    get_settings.cache_clear()  # settings come from this process's environment, not the fork server's
    import pytest

    code = pytest.main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))
