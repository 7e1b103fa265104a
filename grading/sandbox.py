"""The sandbox a submission's checks run in: an unprivileged user of its own, every file read-only (the course, the
checks, the grader, the submission's copy), a private /tmp, no network but its own loopback, its own process tree,
and limits on CPU time, memory, processes and file size.

It is bubblewrap (Debian's `bubblewrap`, installed by `make test`/`make grade` where the grader is root), inside
which util-linux's `setpriv` drops to a user id no one else uses, so the process limit counts only this
submission's processes. Where either tool is missing or the grader is not root, `unavailable()` says why and the
grader runs the checks unsandboxed, with that reason in every report. What the sandbox does not cover: see the
README's "What the grader trusts".
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

#: Sandbox user ids: one per submission being graded at the same time (no account needs to exist for them).
FIRST_UID = 61000
#: Limits inside the sandbox (the whole submission's checks): address space, processes and threads of its user,
#: the largest file it may write, and no core dumps. CPU time is the grader's total time limit.
MEMORY_BYTES = 6 * 1024**3
PROCESSES = 512
FILE_BYTES = 256 * 1024**2
#: The private /tmp's size (bubblewrap's --size), so filling it fills nothing else.
TMP_BYTES = 512 * 1024**2

_next_uid = 0
_lock = threading.Lock()


def unavailable() -> str | None:
    """Why checks cannot be sandboxed here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the sandbox needs the grader to run as root (to start the checks as a user of their own)"
    missing = [tool for tool in ("bwrap", "setpriv") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (apt-get install bubblewrap util-linux)"
    return None


def _take_uid() -> int:
    """A user id for one sandboxed process: never the same twice in this grader's life, so a process limit counts
    one submission's processes only (two submissions graded at once never share a user)."""
    global _next_uid
    with _lock:
        n, _next_uid = _next_uid, _next_uid + 1
    # graders running side by side (pytest-xdist workers, two terminals) get ranges of their own
    return FIRST_UID + (os.getpid() % 4000) * 1000 + n % 1000


def command(
    inner: Sequence[str],
    *,
    cwd: Path,
    uid: int | None = None,
    readonly: Sequence[Path] = (),
    writable: Sequence[Path] = (),
    hide: Sequence[Path] = (),
) -> list[str]:
    """`inner` as the sandbox runs it: setpriv drops to `uid` (default: a fresh one per call, see sandbox_uid), and
    bubblewrap mounts / read-only with a private /tmp, then `readonly` paths (ones under /tmp the checks need: the
    course, the submission's working copy) and `writable` ones (the database server's socket folder), hides `hide`
    (an empty folder, or /dev/null for a file), and gives the process new PID, IPC, UTS and network namespaces; it
    dies with the grader."""
    if uid is None:
        uid = _take_uid()
    # bubblewrap (as root: it reads every source path) builds the view and the namespaces; inside it, setpriv drops
    # to the sandbox user for good (no capabilities, none to regain), so limits and file modes apply to a real user
    wrapped = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    wrapped += ["--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    for closed, inside in _closed_ancestors([Path(sys.base_prefix).resolve(), *readonly]):
        # e.g. /root (0700) above pyenv's Python: an empty folder there, folders others may pass through down to
        # it (bubblewrap would make them 0700), and only the interpreter bound back
        wrapped += ["--perms", "0755", "--tmpfs", str(closed)]
        for step in reversed(inside.relative_to(closed).parents[:-1]):
            wrapped += ["--perms", "0755", "--dir", str(closed / step)]
        wrapped += ["--ro-bind", str(inside), str(inside)]
    # the Python environment the checks run in (a venv reached through a link may live elsewhere under /tmp)
    readonly = [*readonly, Path(sys.prefix).resolve()]
    for path in [*readonly, *writable]:  # folders others may pass through down to each bound path in the new /tmp
        if Path("/tmp") in path.parents:
            for step in reversed(path.relative_to("/tmp").parents[:-1]):
                wrapped += ["--perms", "0755", "--dir", str(Path("/tmp") / step)]
    for path in readonly:
        wrapped += ["--ro-bind", str(path), str(path)]
    for path in writable:
        wrapped += ["--bind", str(path), str(path)]
    for path in hide:
        if path.is_dir():
            wrapped += ["--tmpfs", str(path), "--remount-ro", str(path)]
        elif path.exists():
            wrapped += ["--ro-bind", "/dev/null", str(path)]
    wrapped += ["--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts", "--die-with-parent"]
    wrapped += ["--new-session", "--chdir", str(cwd), "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp"]
    drop = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"]
    drop += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return [*wrapped, "--", *drop, *inner]


def _closed_ancestors(paths: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(the highest folder others may not pass through, the path below it) for each path that has one."""
    found = []
    for path in paths:
        for ancestor in reversed(path.parents):
            if ancestor != Path("/") and not ancestor.stat().st_mode & 0o001:
                found.append((ancestor, path))
                break
    return found


def limits(cpu_seconds: float) -> Callable[[], None]:
    """A preexec_fn setting the sandbox's resource limits (they hold through setpriv and bubblewrap)."""

    def apply() -> None:
        cpu = max(1, int(cpu_seconds))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
        resource.setrlimit(resource.RLIMIT_NPROC, (PROCESSES, PROCESSES))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def readable(path: Path) -> None:
    """Let the sandbox user read `path` and everything in it (a folder the grader made for this submission)."""
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for name in files:
            with contextlib.suppress(OSError):
                os.chmod(Path(root) / name, 0o644)
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(Path(root) / name, 0o755)
