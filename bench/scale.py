"""At scale, bounded: what changes when the table grows (course/experiments/scale.py explains each part).

    python -m bench scale        # ~8 minutes on 2 cores; BENCH_SMOKE=1 runs it on a few hundred rows

Three tables in scratch databases: the corpus as the course loads it, the manual re-chunked at ~300 characters
(about 3x the rows, embedded now), and the corpus grown to 100K rows with perturbed copies. For each: the HNSW build
with the course's maintenance_work_mem, recall@10 at fixed ef_search on the same section-title queries, and the
latency against the exact scan. Then the build memory (the "graph no longer fits" notice, the bytes per tuple it
implies, and a build with memory sized from that) and a table partitioned by topic against one index with a filter.
Prints the tables and `RATIO` lines.
"""

from __future__ import annotations

import asyncpg

import time

import pandas as pd

from bench.common import SMOKE, banner, size, title_queries
from course import database
from course.corpus import read_corpus
from course.table import clone_corpus, load_corpus
from course.embeddings import get_embedder
from course.experiments.scale import (
    build_hnsw,
    filtered_search,
    grow,
    measure_table,
    partition_by_topic,
    rechunked,
)
from course.index_memory import memory_bytes, memory_for

#: In smoke runs the graph must still overflow its memory, so the notice is parsed: 1MB holds ~150 tuples.
SMALL_MEMORY = "1MB" if SMOKE else "64MB"
#: The corpus rows each table starts from (all of them, or a few hundred in smoke runs).
LIMIT = 100 if SMOKE else None


async def _table(name: str, fill) -> asyncpg.Connection:
    from pgvector.asyncpg import register_vector

    conn = await database.connect(database.scratch_database(name, reset=True))
    await fill(conn)
    await register_vector(conn)
    await conn.execute("ANALYZE embeddings")
    return conn


async def _memory(conn, label: str, builds: list[dict], per_tuple: float | None) -> list[dict]:
    """`builds` (already made) and one with memory sized from the measured bytes per tuple, if that differs."""
    rows = await conn.fetchval("SELECT count(*) FROM embeddings")
    per_tuple = next((b["bytes_per_tuple"] for b in builds if b["bytes_per_tuple"]), per_tuple)
    if per_tuple:
        sized = memory_for(rows, per_tuple)
        if sized not in [b["maintenance_work_mem"] for b in builds]:
            builds = [*builds, await build_hnsw(conn, sized)]
    return [{"table": label, "rows": rows, **b} for b in builds]


async def run() -> None:
    banner("At scale: more rows, a bigger graph, partitions")
    course_memory = database.session_settings()["maintenance_work_mem"]
    corpus = read_corpus(limit=LIMIT)
    embedder = get_embedder()
    started = time.perf_counter()
    small_rows = rechunked(corpus)
    small = await _table("bench_scale_small", lambda c: load_corpus(c, embedder, rows=small_rows, progress=False))
    print(
        f"re-chunked at ~300 characters: {len(corpus)} chunks -> {len(small_rows)} rows, embedded and loaded in "
        f"{time.perf_counter() - started:.1f} s"
    )
    base = await _table("bench_scale_base", lambda c: clone_corpus(c, limit=LIMIT))
    grown_rows = size(100_000, 600)
    grown = await _table("bench_scale_grown", lambda c: clone_corpus(c, limit=LIMIT))
    started = time.perf_counter()
    await grow(grown, grown_rows)
    print(f"grown to {grown_rows} rows with perturbed copies in {time.perf_counter() - started:.1f} s")
    try:
        _, queries = await title_queries(base, 60)
        measured = [
            await measure_table(base, queries, course_memory, "corpus"),
            await measure_table(small, queries, course_memory, "re-chunked ~300 chars"),
            await measure_table(grown, queries, course_memory, "grown (perturbed copies)"),
        ]
        results = pd.DataFrame([row for row, _ in measured]).set_index("table")
        print(
            f"\nHNSW m 16 / ef_construction 64 with maintenance_work_mem {course_memory}, {len(queries)} title queries:"
        )
        print(results.to_string(float_format=lambda v: f"{v:.3f}"))
        for label in results.index[1:]:
            r = results.loc[label]
            print(
                f"RATIO {label} vs corpus: rows {r['rows'] / results.iloc[0]['rows']:.2f}x, "
                f"build {r['build s'] / results.iloc[0]['build s']:.2f}x, "
                f"exact scan {r['exact ms'] / results.iloc[0]['exact ms']:.2f}x, "
                f"hnsw ef 40 {r['hnsw ms ef 40'] / results.iloc[0]['hnsw ms ef 40']:.2f}x, "
                f"recall ef 40 {r['recall ef 40']:.3f} vs {results.iloc[0]['recall ef 40']:.3f}"
            )

        # too little memory on the re-chunked table (at 100K rows that build alone takes several minutes), then the
        # course's setting (the builds above) and memory sized from the bytes per tuple pgvector's notice implies
        small_builds = [await build_hnsw(small, SMALL_MEMORY), measured[1][1]]
        per_tuple = next((b["bytes_per_tuple"] for b in (*small_builds, measured[2][1]) if b["bytes_per_tuple"]), None)
        memory = pd.DataFrame(
            [
                *await _memory(small, "re-chunked", small_builds, per_tuple),
                *await _memory(grown, "grown", [measured[2][1]], per_tuple),
            ]
        )
        print("\nHNSW build memory (the NOTICE 'hnsw graph no longer fits into maintenance_work_mem after N tuples'):")
        print(memory.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        if per_tuple:
            print(
                f"measured graph size: {per_tuple:,.0f} bytes per tuple (1536-d float4 vector + neighbour lists); "
                f"{course_memory} holds {memory_bytes(course_memory) / per_tuple:,.0f} tuples; "
                f"1M rows need {memory_for(1_000_000, per_tuple)}"
            )
        for label, group in memory.groupby("table", sort=False):
            slow, fast = group.iloc[0], group.iloc[-1]
            print(
                f"RATIO {label} build with {slow['maintenance_work_mem']} vs {fast['maintenance_work_mem']}: "
                f"{slow['seconds'] / fast['seconds']:.2f}x the time"
            )

        print("\nFiltered search, re-chunked table: one index with a filter vs a table partitioned by topic")
        topics = await partition_by_topic(small)
        parts = await filtered_search(small, queries, [topics[0], topics[-1]])  # the largest and smallest partitions
        print(parts.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for topic, group in parts.groupby("topic", sort=False):
            planner, one, iterative, parted, own = (group.iloc[i] for i in range(5))
            print(
                f"RATIO {topic}: the partition's index vs one index + iterative scan "
                f"{iterative['p50 ms'] / own['p50 ms']:.2f}x faster (recall {own['recall@10']:.3f} vs "
                f"{iterative['recall@10']:.3f}; the filter alone returns {one['rows returned']:.1f} rows); "
                f"planner's choice, partitioned vs one table: {planner['p50 ms'] / parted['p50 ms']:.2f}x faster"
            )
    finally:
        for conn in (base, small, grown):
            await conn.close()
