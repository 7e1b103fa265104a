"""Shared benchmark plumbing: a scratch copy of the corpus and the queries every benchmark uses."""

from __future__ import annotations

import os

import numpy as np

from course import database
from course.table import clone_corpus
from course.embeddings import get_embedder


#: BENCH_SMOKE=1 (tests/test_bench.py): every benchmark on a few hundred rows and a handful of queries, to prove it
#: still runs end to end; the numbers it prints then mean nothing.
SMOKE = os.environ.get("BENCH_SMOKE") == "1"


def size(full: int, smoke: int) -> int:
    return smoke if SMOKE else full


async def scratch_copy(name: str, *, storage: str | None = None, limit: int | None = None):
    """A connection to a practice database holding a copy of the corpus (so benchmarks never touch the course data)."""
    from pgvector.asyncpg import register_vector

    if limit is None and SMOKE:
        limit = 600

    conn = await database.connect(database.scratch_database(name, reset=True))
    await clone_corpus(conn, storage=storage, limit=limit)
    await register_vector(conn)
    return conn


async def title_queries(conn, n: int = 100) -> tuple[list[str], list[np.ndarray]]:
    """n section titles of the manual, embedded: realistic questions with answers in the corpus."""
    titles = [
        r[0]
        for r in await conn.fetch(
            "SELECT s FROM (SELECT DISTINCT metadata->>'section' AS s FROM embeddings) t ORDER BY md5(s) LIMIT $1",
            size(n, 6),
        )
    ]
    vectors = await get_embedder().embed(titles, kind="query")
    return titles, [np.asarray(v, dtype=np.float32) for v in vectors]


def banner(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 100 - len(title)))
