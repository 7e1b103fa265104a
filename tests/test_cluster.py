"""Streaming replicas as a learner runs them: `python -m course cluster start --replicas 2` beside a fresh embedded
server, then `make serve`, which reads from the standbys and writes to the primary. One story (one cluster, ~30 s):
the standbys replay and serve the index; a client reads its own write; searches under load survive a standby, both
standbys and the primary going away, and the standbys rejoin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pytest

from course.settings import get_settings
from tests.servers import make_serve

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


def course(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python -m course …` as the README writes it, with the test cluster's settings."""
    return subprocess.run(
        [sys.executable, "-m", "course", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


class Load:
    """Searches from 4 threads, each query new (so each one reads the database), until stopped; every answer's
    status and Retry-After is kept with its time."""

    def __init__(self, url: str):
        self.url, self.answers, self._stop = url, [], threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(4)]

    def _run(self, worker: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                r = client.post("/search?mode=vector", json={"query": f"vacuum and indexes {worker} {n}"})
                self.answers.append((time.monotonic(), r.status_code, r.headers.get("retry-after")))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def since(self, t0: float) -> list[tuple[float, int, str | None]]:
        return [a for a in self.answers if a[0] >= t0]


def wait_for(predicate, timeout: float = 20.0, what: str = "") -> float:
    """Poll `predicate` until it is true; the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_the_service_on_streaming_replicas(monkeypatch):
    folder = Path(tempfile.mkdtemp(prefix="cl-"))  # short: the sockets live in the data folders
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("COURSE_")},
        "COURSE_PGDATA": str(folder / "pgdata"),
        "COURSE_CORPUS_LIMIT": "300",
    }
    for key in ("DATABASE_URL", "DATABASE_READ_URLS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("COURSE_PGDATA", env["COURSE_PGDATA"])
    get_settings.cache_clear()
    from course import cluster, database

    try:
        loaded = course(env, "corpus", "load")
        assert loaded.returncode == 0, loaded.stderr
        started = course(env, "cluster", "start", "--replicas", "2")
        assert started.returncode == 0, started.stderr
        assert "2 hot standby(s) ready" in started.stdout

        # --- the standbys: streaming, replaying the primary's writes, serving the same index, refusing writes -----
        status = json.loads(course(env, "cluster", "status").stdout)
        assert [s["name"] for s in status["standbys"]] == ["standby1", "standby2"]
        assert all(s["running"] and s["state"] == "streaming" for s in status["standbys"]), status
        primary = database.libpq_url()
        standby = cluster.running_standby_urls()[0]
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO embeddings (content, metadata, embedding) "
                "SELECT 'replayed row', metadata, embedding FROM embeddings LIMIT 1"
            )
            lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        cluster.wait_for_replay(standby, lsn, timeout=20)
        with psycopg.connect(standby, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM embeddings WHERE content = 'replayed row'").fetchone()[0] == 1
            conn.execute("SET enable_seqscan = off")  # 300 rows: the planner would rather read them all
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    "EXPLAIN SELECT id FROM embeddings ORDER BY embedding <=> "
                    "(SELECT embedding FROM embeddings LIMIT 1) LIMIT 10"
                ).fetchall()
            )
            assert "Index Scan using embeddings_embedding_hnsw" in plan, plan
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM embeddings")
        status = json.loads(course(env, "cluster", "status").stdout)
        assert all(s["lag_bytes"] is not None for s in status["standbys"]), status

        # --- make serve: reads on the standbys, writes on the primary ----------------------------------------------
        with (
            make_serve(
                ROOT,
                COURSE_PGDATA=env["COURSE_PGDATA"],
                COURSE_CORPUS_LIMIT="300",
                SEARCH_MODE="vector",
                READ_MAX_LAG="3",
            ) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            health = client.get("/healthz").json()
            assert health["status"] == "ok", health
            assert [s["taking_reads"] for s in health["replicas"]["standbys"]] == [True, True], health
            for n in range(6):
                assert client.post("/search", json={"query": f"create index {n}"}).status_code == 200
            health = client.get("/healthz").json()
            assert all(s["reads"] > 0 for s in health["replicas"]["standbys"]), health
            assert health["replicas"]["reads_on_primary"] == 0, health

            def standbys_taking_reads() -> list[bool]:
                return [s["taking_reads"] for s in client.get("/healthz").json()["replicas"]["standbys"]]

            def reads_on_primary() -> int:
                return client.get("/healthz").json()["replicas"]["reads_on_primary"]

            # read-your-writes: with replay paused on both standbys (just caught up, so within READ_MAX_LAG), a write
            # made elsewhere is invisible to a plain search, and visible to one that names its position
            with psycopg.connect(primary, autocommit=True) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS tick (t timestamptz); INSERT INTO tick VALUES (now())")
                caught_up = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            for url_ in cluster.running_standby_urls():
                cluster.wait_for_replay(url_, caught_up)
                with psycopg.connect(url_, autocommit=True) as conn:
                    conn.execute("SELECT pg_wal_replay_pause()")
            with psycopg.connect(primary, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO embeddings (content, metadata, embedding) SELECT 'elsewhere', "
                    """metadata || '{"tag": "elsewhere"}', embedding FROM embeddings LIMIT 1"""
                )
                elsewhere = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            find = {"json": {"query": "anything"}, "params": {"min_score": -1, "filter": '{"tag": "elsewhere"}'}}
            assert client.post("/search", **find).json()["count"] == 0, "a standby with replay paused is stale"
            found = client.post("/search", headers={"X-Read-After-LSN": elsewhere}, **find).json()
            assert found["count"] == 1, found
            bad = client.post("/search", headers={"X-Read-After-LSN": "yesterday"}, json={"query": "x"})
            assert bad.status_code == 400 and bad.json()["error"] == "bad_request", bad.text
            # past READ_MAX_LAG (3 s) behind, the standbys take no reads: the primary serves them
            wait_for(lambda: standbys_taking_reads() == [False, False], timeout=30, what="lagging standbys out")
            on_primary = reads_on_primary()
            assert client.post("/search", json={"query": "while the standbys lag"}).status_code == 200
            assert reads_on_primary() > on_primary
            for url_ in cluster.running_standby_urls():
                with psycopg.connect(url_, autocommit=True) as conn:
                    conn.execute("SELECT pg_wal_replay_resume()")
            wait_for(lambda: standbys_taking_reads() == [True, True], what="caught-up standbys back in")
            # the service's own write is visible to its next search at once
            created = client.post("/documents", json={"content": "own write", "metadata": {"tag": "own"}})
            assert created.status_code == 201 and created.json()["lsn"], created.text
            own = client.post(
                "/search", json={"query": "own write"}, params={"min_score": -1, "filter": '{"tag": "own"}'}
            )
            assert own.json()["count"] == 1, own.text

            recovery: dict[str, float] = {}
            on_primary = reads_on_primary()
            with Load(url) as load:
                wait_for(lambda: len(load.answers) > 20, what="the load to start")
                # one standby stopped under load: every search still answers
                t0 = time.monotonic()
                cluster.stop_standby("standby1")
                recovery["standby stopped → out of reads"] = wait_for(
                    lambda: standbys_taking_reads() == [False, True], what="standby1 out of reads"
                )
                wait_for(lambda: len(load.since(t0)) > 40, what="searches on one standby")
                # both stopped: the primary serves the reads
                cluster.stop_standby("standby2")
                wait_for(lambda: len(load.since(t0)) > 80, what="searches on the primary")
                assert client.get("/healthz").json()["status"] == "degraded"
                # both restarted: they rejoin
                cluster.start_standby("standby1")
                cluster.start_standby("standby2")
                recovery["standbys restarted → taking reads"] = wait_for(
                    lambda: standbys_taking_reads() == [True, True], what="the standbys rejoining"
                )
                during = load.since(t0)
                assert Counter(a[1] for a in during) == {200: len(during)}, Counter(a[1] for a in during)
                health = client.get("/healthz").json()
                assert health["replicas"]["reads_on_primary"] > on_primary, health
                assert health["status"] == "ok", health

                # the primary stopped: searches go on from the standbys, writes get 503 + Retry-After
                t2 = time.monotonic()
                database.stop()
                wait_for(lambda: len(load.since(t2)) > 40, what="searches without the primary")
                write = client.post("/documents", json={"content": "while the primary is down"})
                assert write.status_code == 503 and write.headers.get("retry-after"), write.text
                health = client.get("/healthz").json()
                assert health["status"] == "degraded" and health["database"]["writes"] is False, health
                # no node left: 503 + Retry-After, nothing else
                t3 = time.monotonic()
                cluster.stop_standby("standby1")
                cluster.stop_standby("standby2")
                wait_for(lambda: any(a[1] == 503 for a in load.since(t3)), what="a 503 with no node left")
                database.start()
                cluster.start_standby("standby1")
                cluster.start_standby("standby2")
                t4 = time.monotonic()
                recovery["all restarted → searches answer"] = wait_for(
                    lambda: any(a[1] == 200 for a in load.since(t4)), what="searches after the restart"
                )
                recovery["all restarted → writes answer"] = wait_for(
                    lambda: client.post("/documents", json={"content": "back"}).status_code == 201,
                    what="writes after the restart",
                )
            assert all(a[1] == 200 for a in load.answers if t2 <= a[0] < t3), "searches failed without the primary"
            outage = [a for a in load.answers if t3 <= a[0] < t4]
            assert {a[1] for a in outage} <= {200, 503}, Counter(a[1] for a in outage)
            assert all(a[2] for a in outage if a[1] == 503), "a 503 without Retry-After"
            print("recovery seconds:", {k: round(v, 2) for k, v in recovery.items()})

        # --- stop: standbys, slots and data gone; the primary keeps running ---------------------------------------
        stopped = course(env, "cluster", "stop")
        assert stopped.returncode == 0 and "2 standby(s) stopped and removed" in stopped.stdout, stopped.stderr
        assert not cluster.standbys_dir().exists()
        with psycopg.connect(database.libpq_url(), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
    finally:
        course(env, "cluster", "stop")
        course(env, "db", "stop")
        get_settings.cache_clear()
        database._ensured.clear()
        database._checked.clear()
        shutil.rmtree(folder, ignore_errors=True)
