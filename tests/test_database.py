"""course.database: the embedded server, URLs for every driver, throw-away databases, clear errors."""

from __future__ import annotations

import psycopg
import pytest

from course import database
from course.settings import get_settings


def test_embedded_server_runs_pgvector_0_8():
    info = database.check_server(database.start())
    assert info["server_version"].startswith("18")
    assert tuple(int(x) for x in info["pgvector"].split(".")[:2]) >= (0, 8)
    assert database.status()["running"] is True


async def test_every_driver_gets_the_session_settings():
    conn = await database.connect()
    try:
        assert await conn.fetchval("SHOW maintenance_work_mem") == get_settings().maintenance_work_mem
        assert await conn.fetchval("SELECT '{\"a\": 1}'::jsonb") == {"a": 1}, "jsonb decodes to dicts"
    finally:
        await conn.close()
    assert database.sqlalchemy_url().startswith("postgresql+asyncpg://")


def test_temporary_databases_are_created_empty_and_dropped():
    with database.temporary_database("test_db") as url:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone()[0] == 0
        name = database.database_name(url)
    with psycopg.connect(database.libpq_url()) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name]).fetchone()[0] == 0


def test_unreachable_server_gives_a_clear_error():
    with pytest.raises(database.DatabaseError, match="Cannot connect"):
        database.check_server("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")


def test_url_forms_are_normalised(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p%40ss@db.example:5433/course")
    get_settings.cache_clear()
    try:
        assert database.libpq_url() == "postgresql://u:p%40ss@db.example:5433/course"
        assert database.sqlalchemy_url("other") == "postgresql+asyncpg://u:p%40ss@db.example:5433/other"
        assert not database.is_embedded()
        with pytest.raises(database.DatabaseError, match="does not manage"):
            database.stop()
    finally:
        get_settings.cache_clear()


def test_url_helpers_start_nothing(monkeypatch, tmp_path):
    """Only start() starts a server: without a running one, a URL helper says how to start it and touches no disk."""
    pgdata = tmp_path / "pgdata"
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("COURSE_PGDATA", str(pgdata))
    get_settings.cache_clear()
    try:
        assert database.is_embedded()
        for helper in (database.libpq_url, database.sqlalchemy_url, database.database_name, database.check_server):
            with pytest.raises(database.DatabaseError, match="not running.*course db start"):
                helper()
        assert not pgdata.exists(), "no server was initialised"
        assert database.status() == {"mode": "embedded", "pgdata": str(pgdata), "running": False}
    finally:
        get_settings.cache_clear()


def test_database_urls_have_one_form_and_a_name():
    from pydantic import ValidationError

    from course.settings import Settings

    def configured(value):
        return Settings(_env_file=None, database_url=value).database_url

    assert configured("postgres://u:p@db.example:5432/app") == "postgresql://u:p@db.example:5432/app"
    assert configured(" postgresql+asyncpg://u@h/app?ssl=require ") == "postgresql://u@h/app?ssl=require"
    assert configured("") is None
    with pytest.raises(ValidationError, match="postgresql://"):
        configured("mysql://u@h/app")
    assert database.database_name("postgresql://u@h:5432/app?sslmode=require") == "app"
    assert database.database_name("postgresql://u@h") == "postgres"


def test_psql_in_a_fresh_shell_sees_the_index_plan_the_notebooks_teach():
    """A learner who types a query into `python -m course db psql` (no course session settings, a fresh shell with
    only the venv on PATH) gets the HNSW index, because the server's own configuration says so; `db status` reports
    that configuration."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from course.table import SEARCH_INDEX

    root = Path(__file__).resolve().parent.parent
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    env.update({k: v for k, v in os.environ.items() if k.startswith("COURSE_") or k == "DATABASE_URL"})
    query = (
        "EXPLAIN SELECT id FROM embeddings ORDER BY embedding <=> (SELECT embedding FROM embeddings LIMIT 1) LIMIT 10"
    )
    shell = f"python -m course db psql -X -c {query!r}"
    result = subprocess.run(["bash", "-c", shell], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"Index Scan using {SEARCH_INDEX}" in result.stdout, result.stdout
    if database.is_embedded():
        status = subprocess.run(
            ["bash", "-c", "python -m course db status"], cwd=root, env=env, capture_output=True, text=True, timeout=60
        )
        configuration = json.loads(status.stdout)["configuration"]
        assert configuration == database.server_configuration(), configuration
