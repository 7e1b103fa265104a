"""The first search after a server restart, against a warm one: what `pg_prewarm`'s autoprewarm buys.

The embedded server is configured by the course (`course.database.server_configuration`: shared_buffers that hold
the table, its TOAST and its HNSW index; pg_prewarm preloaded, whose autoprewarm worker saves the cached blocks at
shutdown and reloads them at start). This benchmark runs on a server of its own (a temporary data directory, the
corpus loaded into it), so the course's server is never restarted under a running notebook or test. For each setting
it restarts the server ROUNDS times and times the first HNSW search of a new connection against the median of the
warm ones that follow, and against the first search of a new connection to a server that was not restarted (a new
backend fills its own catalog caches: that part no restart setting can remove). The operating system's file cache
stays warm throughout (dropping it needs root and slows the whole machine); the cold cost measured is PostgreSQL's
own buffer cache.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import SMOKE, banner
from course import database
from course.settings import get_settings

ROUNDS = 2 if SMOKE else 5
QUERY = "SELECT id FROM embeddings ORDER BY embedding <=> $1 LIMIT 10"


async def _first_and_warm(vector) -> tuple[float, float]:
    conn = await database.connect()
    try:
        from pgvector.asyncpg import register_vector

        await register_vector(conn)
        started = time.perf_counter()
        await conn.fetch(QUERY, vector)
        first = time.perf_counter() - started
        warm = []
        for _ in range(20):
            started = time.perf_counter()
            await conn.fetch(QUERY, vector)
            warm.append(time.perf_counter() - started)
    finally:
        await conn.close()
    return first, statistics.median(warm)


def _restart() -> None:
    database.stop()
    database.start()


async def run() -> dict[str, float]:
    banner("Cold start: the first search after a restart vs warm ones (pg_prewarm autoprewarm on / off)")
    from course.table import ensure_search_index, load_corpus, prewarm

    saved = {name: os.environ.get(name) for name in ("COURSE_PGDATA", "COURSE_CORPUS_LIMIT")}
    workdir = Path(tempfile.mkdtemp(prefix="bench-coldstart-"))
    os.chmod(workdir, 0o755)  # the server runs as its own OS user when we are root
    os.environ["COURSE_PGDATA"] = str(workdir / "pgdata")
    if SMOKE:
        os.environ["COURSE_CORPUS_LIMIT"] = "600"
    get_settings.cache_clear()
    database._ensured.clear()
    results: dict[str, float] = {}
    try:
        database.start()
        conn = await database.connect()
        try:
            await load_corpus(conn)
            await ensure_search_index(conn)
            await prewarm(conn)
            vector = np.asarray((await conn.fetchval("SELECT embedding::real[] FROM embeddings LIMIT 1")), np.float32)
        finally:
            await conn.close()
        for autoprewarm in ("on", "off", "no restart"):
            if autoprewarm != "no restart":
                conn = await database.connect()
                await conn.execute(f"ALTER SYSTEM SET pg_prewarm.autoprewarm = {autoprewarm}")
                await conn.close()
            ratios, firsts, warms = [], [], []
            for _ in range(ROUNDS):
                if autoprewarm != "no restart":
                    _restart()
                first, warm = await _first_and_warm(vector)
                ratios.append(first / warm)
                firsts.append(first * 1e3)
                warms.append(warm * 1e3)
            label = (
                "a new connection, server not restarted"
                if autoprewarm == "no restart"
                else "autoprewarm " + autoprewarm
            )
            print(
                f"{label}: first search {statistics.median(firsts):7.1f} ms, warm "
                f"{statistics.median(warms):5.2f} ms ({ROUNDS} rounds; first / warm per round: "
                + ", ".join(f"{r:.1f}" for r in ratios)
                + ")"
            )
            results[autoprewarm] = statistics.median(ratios)
            results[f"first {autoprewarm}"] = statistics.median(firsts)
            print(
                f"RATIO first search / warm, {label}: {results[autoprewarm]:.2f}x "
                f"(median of {ROUNDS}, range {min(ratios):.1f}-{max(ratios):.1f})"
            )
        print(
            "RATIO first search after a restart / first search of a new connection without one, autoprewarm on: "
            f"{results['first on'] / results['first no restart']:.2f}x, off: "
            f"{results['first off'] / results['first no restart']:.2f}x (what remains with autoprewarm on is a new "
            "backend's own catalog caches, which every new connection pays)"
        )
    finally:
        try:
            database.stop()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            get_settings.cache_clear()
            database._ensured.clear()
            database._checked.clear()
            shutil.rmtree(workdir, ignore_errors=True)
    return results
