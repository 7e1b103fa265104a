"""`python -m bench cluster`: the search's database tier on streaming replicas, measured on this machine.

On a primary of its own (a temporary embedded server holding the corpus, so neither the course's server nor a running
`make serve` sees these standbys): the time to add a hot standby; searches/s, p50 and p95 with reads on the primary
alone, then on 1 and 2 standbys (course.replicas.Reads, the service's read path); CPU milliseconds per search of each
node's database processes; and the replay lag while the corpus is bulk-inserted on the primary.

Every node runs on the same cores as the client here, so standbys cannot add throughput on this machine: the bench
says so, and derives what one node can serve from its CPU per search instead (as notebook 02 §10 derives bytes per
row)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from bench.common import SMOKE, banner, size
from course.replicas import Reads, lsn_value

SEARCH = "SELECT id FROM embeddings ORDER BY embedding <=> $1 LIMIT 10"
CONCURRENCY = 8


@contextlib.contextmanager
def own_primary():
    """A temporary embedded server as the course's (COURSE_PGDATA), stopped and deleted afterwards."""
    from course import cluster, database
    from course.settings import get_settings

    folder = Path(tempfile.mkdtemp(prefix="bc-"))  # short: sockets live in the data folders
    saved = os.environ.get("COURSE_PGDATA")
    os.environ["COURSE_PGDATA"] = str(folder / "pgdata")
    get_settings.cache_clear()
    database._ensured.clear()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
        with contextlib.suppress(Exception):
            database.stop()
        if saved is None:
            os.environ.pop("COURSE_PGDATA", None)
        else:
            os.environ["COURSE_PGDATA"] = saved
        get_settings.cache_clear()
        database._ensured.clear()
        database._checked.clear()
        shutil.rmtree(folder, ignore_errors=True)


def _database_cpu(pgdata: str) -> float:
    """CPU seconds of the server running in `pgdata` (its postmaster's children: backends, walreceiver, startup)."""
    info = psutil.Process(int(Path(pgdata, "postmaster.pid").read_text().split()[0]))
    total = 0.0
    for process in info.children():
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def _searches(reads: Reads, queries: list[np.ndarray], nodes: dict[str, str]) -> dict:
    """Every query once, CONCURRENCY at a time, through `reads`; latency percentiles, searches/s and CPU per search."""
    queue, latencies = list(queries), []

    async def worker():
        while queue:
            vector = queue.pop()
            started = time.perf_counter()
            await reads.run(lambda conn, v=vector: conn.fetch(SEARCH, v), within=30)
            latencies.append((time.perf_counter() - started) * 1000)

    before = {name: _database_cpu(pgdata) for name, pgdata in nodes.items()}
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    wall = time.perf_counter() - started
    cpu = {name: (_database_cpu(pgdata) - before[name]) * 1000 / len(latencies) for name, pgdata in nodes.items()}
    return {
        "searches_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "cpu_ms": cpu,
    }


async def _bulk_insert_lag(primary_url: str, standby_url: str, rows: int) -> dict:
    """Copy `rows` rows of the corpus (with its HNSW index) into a new table on the primary in batches, while polling
    the standby's replay lag; the largest lag seen and how long the standby took to catch up after the last commit."""
    from course import database

    primary = await database.connect(primary_url)
    head_conn = await database.connect(primary_url)  # the watcher's own: one connection runs one query at a time
    standby = await database.connect(standby_url)
    await primary.execute("DROP TABLE IF EXISTS bulk")
    await primary.execute("CREATE TABLE bulk (LIKE embeddings INCLUDING ALL)")
    start_lsn = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
    worst = {"bytes": 0, "seconds": 0.0}
    done = asyncio.Event()

    async def watch():
        while not done.is_set():
            head = await head_conn.fetchval("SELECT pg_current_wal_lsn()::text")
            replayed, since = await standby.fetchrow(
                "SELECT pg_last_wal_replay_lsn()::text, "
                "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
            )
            behind = max(0, lsn_value(head) - lsn_value(replayed))
            worst["bytes"] = max(worst["bytes"], behind)
            if behind:
                worst["seconds"] = max(worst["seconds"], since or 0.0)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    batch = 500
    for offset in range(0, rows, batch):
        await primary.execute(
            "INSERT INTO bulk SELECT * FROM embeddings ORDER BY id OFFSET $1 LIMIT $2",
            offset,
            min(batch, rows - offset),
        )
    inserted = time.perf_counter() - started
    end_lsn = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
    done.set()
    await watcher
    caught_up = time.perf_counter()
    while True:  # polled: a standby has no way to say when it has replayed a position
        if await standby.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", end_lsn):
            break
        await asyncio.sleep(0.005)
    catch_up = time.perf_counter() - caught_up
    await primary.execute("DROP TABLE bulk")
    for conn in (primary, head_conn, standby):
        await conn.close()
    return {
        "rows": rows,
        "seconds": inserted,
        "wal_mb": (lsn_value(end_lsn) - lsn_value(start_lsn)) / 1e6,
        "max_lag_mb": worst["bytes"] / 1e6,
        "max_lag_s": worst["seconds"],
        "catch_up_s": catch_up,
    }


async def run() -> dict[str, float]:
    from course import cluster, database
    from course.embeddings import get_embedder
    from course.table import ensure_search_index, load_corpus

    banner("Streaming replicas: the search's database tier on 0, 1 and 2 hot standbys (python -m bench cluster)")
    with own_primary():
        primary_url = database.start()
        conn = await database.connect(primary_url)
        try:
            await load_corpus(conn, limit=600 if SMOKE else None, progress=False)
            await ensure_search_index(conn)
            titles = [
                r[0]
                for r in await conn.fetch(
                    "SELECT DISTINCT metadata->>'section' FROM embeddings ORDER BY 1 LIMIT $1", size(400, 40)
                )
            ]
            rows = await conn.fetchval("SELECT count(*) FROM embeddings")
            data_mb = await conn.fetchval("SELECT sum(pg_database_size(datname)) / 1e6 FROM pg_database")
        finally:
            await conn.close()
        queries = [np.asarray(v, dtype=np.float32) for v in await get_embedder().embed(titles, kind="query")]
        print(
            f"a primary of its own: {rows:,} rows of the corpus, {data_mb:.0f} MB of databases; {len(queries)} "
            f"queries, {CONCURRENCY} at a time, top 10 by the HNSW index"
        )

        added = []
        for n in (1, 2):
            started = time.perf_counter()
            cluster.start_standby(cluster.standby_name(n))
            added.append(time.perf_counter() - started)
        print(
            f"adding a standby (pg_basebackup of {data_mb:.0f} MB, start, first replay): "
            + ", ".join(f"{s:.1f} s" for s in added)
        )
        primary_pgdata = str(Path(os.environ["COURSE_PGDATA"]))
        standbys = {cluster.standby_name(n): str(cluster.standbys_dir() / cluster.standby_name(n)) for n in (1, 2)}
        urls = {name: cluster.standby_url(Path(pgdata)) for name, pgdata in standbys.items()}

        primary_pool = await database.create_pool(primary_url, min_size=CONCURRENCY, max_size=CONCURRENCY)
        pools = {
            name: await database.create_pool(url, min_size=CONCURRENCY, max_size=CONCURRENCY)
            for name, url in urls.items()
        }
        setups = {
            "primary only": Reads(primary_pool),
            "1 standby": Reads(primary_pool, {"standby1": pools["standby1"]}),
            "2 standbys": Reads(primary_pool, pools),
        }
        nodes = {"primary": primary_pgdata, **standbys}
        results: dict[str, list[dict]] = {name: [] for name in setups}
        try:
            for reads in setups.values():
                await reads.poll()  # which standbys are up (no monitor: nothing changes during the bench)
            for _ in range(size(5, 1)):  # alternating rounds: drift on a shared machine hits every setup alike
                for name, reads in setups.items():
                    results[name].append(await _searches(reads, queries, nodes))
        finally:
            await primary_pool.close()
            for pool in pools.values():
                await pool.close()

        summary: dict[str, float] = {}
        print(
            f"\n{'reads on':<14}{'searches/s':>12}{'p50 ms':>9}{'p95 ms':>9}   CPU ms per search (database processes)"
        )
        for name, rounds in results.items():
            median = {k: float(np.median([r[k] for r in rounds])) for k in ("searches_per_s", "p50_ms", "p95_ms")}
            cpu = {node: float(np.median([r["cpu_ms"][node] for r in rounds])) for node in nodes}
            spread = [r["searches_per_s"] for r in rounds]
            print(
                f"{name:<14}{median['searches_per_s']:>12.0f}{median['p50_ms']:>9.2f}{median['p95_ms']:>9.2f}   "
                + ", ".join(f"{node} {ms:.2f}" for node, ms in cpu.items())
                + f"   (rounds {min(spread):.0f}–{max(spread):.0f}/s)"
            )
            summary[f"{name} searches/s"] = median["searches_per_s"]
            summary[f"{name} cpu ms"] = sum(cpu.values())
        for name in ("1 standby", "2 standbys"):
            ratios = [r["searches_per_s"] / p["searches_per_s"] for r, p in zip(results[name], results["primary only"])]
            low, high = min(ratios), max(ratios)
            verdict = "a tie" if low <= 1 <= high else ("more" if low > 1 else "fewer")
            print(
                f"RATIO searches/s, reads on {name} ÷ on the primary only: {np.median(ratios):.2f} "
                f"(rounds {low:.2f}–{high:.2f}: {verdict})"
            )
        # one standby serving every read: its database processes' CPU per search is what a node's capacity rests on
        per_search = float(np.median([r["cpu_ms"]["standby1"] for r in results["1 standby"]]))
        per_primary = float(np.median([r["cpu_ms"]["primary"] for r in results["primary only"]]))
        print(f"RATIO database CPU per search on a standby ÷ on the primary: {per_search / per_primary:.2f}")
        cores = psutil.cpu_count() or 1
        print(
            f"\nThis machine has {cores} cores, shared by the client, the primary and every standby: spreading reads "
            "over standbys moves the work to other processes on the same cores, it does not add cores; the ratios "
            "above are about this machine's scheduling, not about capacity."
        )
        print(
            f"What one node can serve: {per_search:.2f} ms of database CPU per search → about "
            f"{1000 / per_search:,.0f} searches/s per core; a standby with 4 cores ≈ {4000 / per_search:,.0f}/s, "
            "and N standbys ≈ N times that, while the primary keeps the writes."
        )

        lag = await _bulk_insert_lag(primary_url, urls["standby1"], min(rows, size(8640, 600)))
        print(
            f"\nbulk insert on the primary: {lag['rows']:,} rows with their HNSW index in {lag['seconds']:.1f} s, "
            f"{lag['wal_mb']:.0f} MB of WAL; standby1 was at most {lag['max_lag_mb']:.1f} MB "
            f"({lag['max_lag_s']:.2f} s) behind, and caught up {lag['catch_up_s'] * 1000:.0f} ms after the last commit"
        )
        print(f"RATIO replay lag at its worst ÷ WAL written: {lag['max_lag_mb'] / max(lag['wal_mb'], 1e-9):.2f}")
        summary.update({"standby add s": float(np.mean(added)), "bulk max lag mb": lag["max_lag_mb"]})
    return summary
