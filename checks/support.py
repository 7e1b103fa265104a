"""Helpers for writing checks: the graded-module fixture and embedders that observe or sabotage calls."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from pgvector.asyncpg import register_vector

from course.table import EMBEDDINGS_TABLE_DDL
from course.embeddings import EmbeddingUnavailable, HashingEmbedder, check_kind
from course.target import load_objective


def objective(number: int):
    """A fixture returning the graded module for one objective: `lab = objective(1)` in a check file.
    Importing inside a fixture turns a broken lab (syntax error, bad import) into failed checks, not a crash."""

    @pytest.fixture
    def _lab(target):
        return load_objective(number, target)

    return _lab


class RecordingEmbedder(HashingEmbedder):
    """The deterministic hashing embedder, recording every call; can fail on the n-th call or poison a vector."""

    model_id = "check/recording"

    def __init__(
        self, *, fail_on_call: int | None = None, nan_on_call: int | None = None, short_on_call: int | None = None
    ):
        self.calls: list[list[str]] = []
        self.kinds: list[str] = []
        self.fail_on_call = fail_on_call
        self.nan_on_call = nan_on_call
        self.short_on_call = short_on_call  # that call answers one vector fewer than it was sent texts

    async def embed(self, texts: Sequence[str], kind: str = "document") -> list[list[float]]:
        check_kind(kind)
        self.calls.append(list(texts))
        self.kinds.append(kind)
        if self.fail_on_call == len(self.calls):
            raise EmbeddingUnavailable("simulated provider outage", retry_after=1)
        vectors = self.embed_sync(texts)
        if self.nan_on_call == len(self.calls):
            vectors[-1][0] = math.nan
        if self.short_on_call == len(self.calls):
            vectors = vectors[:-1]
        return vectors


async def create_table(conn) -> None:
    """The `embeddings` table exactly as Objective 1 specifies it, made by the check itself so that each check
    grades one function only (a learner's Objective 1 mistakes don't cascade)."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await conn.execute(EMBEDDINGS_TABLE_DDL)
    await register_vector(conn)


async def seed(
    conn, vectors, contents: Sequence[str] | None = None, metadata: Sequence[dict[str, Any]] | None = None
) -> list[uuid.UUID]:
    """Insert known rows (vectors as an array of shape (n, 1536)); returns their ids in order."""
    await create_table(conn)
    vectors = np.asarray(vectors, dtype=np.float32)
    ids = [uuid.uuid4() for _ in range(len(vectors))]
    contents = contents or [f"document {i}" for i in range(len(vectors))]
    metadata = metadata or [{"n": i} for i in range(len(vectors))]
    await conn.executemany(
        "INSERT INTO embeddings (id, content, metadata, embedding) VALUES ($1, $2, $3, $4)",
        list(zip(ids, contents, metadata, vectors)),
    )
    return ids


def random_vectors(n: int, *, seed: int = 0, normalised: bool = False, dims: int = 1536) -> np.ndarray:
    """n vectors with a few clusters, unit length if `normalised`. Like real embeddings they have a low intrinsic
    dimension (a 32-d latent space projected to `dims`), so approximate indexes behave as they do on text.
    float32, exactly as PostgreSQL stores them, so numpy recomputations match the database."""
    rng = np.random.default_rng(seed)
    projection = np.random.default_rng(12345).normal(size=(32, dims))  # the same space for every call
    centres = rng.normal(size=(5, 32))
    m = (centres[rng.integers(0, 5, n)] + rng.normal(scale=0.8, size=(n, 32))) @ projection
    m *= rng.uniform(0.2, 3.0, size=(n, 1))  # different lengths: the metrics disagree
    if normalised:
        m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m.astype(np.float32)


def _recorded(name: str):
    async def method(self, sql, *args, **kwargs):
        self.statements.append((sql, args))
        return await getattr(self._db, name)(sql, *args, **kwargs)

    method.__name__ = name
    return method


class RecordingDB:
    """Stands in for a pool or connection, runs everything on the real one, and records each statement with its
    arguments, so a check can EXPLAIN exactly the SQL a learner's function ran."""

    def __init__(self, db):
        self._db = db
        self.statements: list[tuple[str, tuple]] = []

    fetch, fetchrow, fetchval, execute = (_recorded(n) for n in ("fetch", "fetchrow", "fetchval", "execute"))

    def __getattr__(self, name):
        return getattr(self._db, name)


class RecordingPool:
    """Stands in for an asyncpg pool: every connection it lends records its statements (RecordingDB) into one
    list, so a check can EXPLAIN the SQL a service ran through its pool."""

    def __init__(self, pool):
        self._pool = pool
        self.statements: list[tuple[str, tuple]] = []

    def acquire(self, **kwargs):
        import contextlib

        @contextlib.asynccontextmanager
        async def lend():
            async with self._pool.acquire(**kwargs) as conn:
                recorder = RecordingDB(conn)
                recorder.statements = self.statements
                yield recorder

        return lend()

    def __getattr__(self, name):
        return getattr(self._pool, name)


def plan_nodes(plan: dict) -> list[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, depth first (CTEs and subplans included)."""
    nodes, stack = [], [plan.get("Plan", plan)]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.get("Plans", []))
    return nodes


async def explain(conn, sql: str, args: tuple = ()) -> dict:
    """EXPLAIN (FORMAT JSON) of one statement with its arguments, as a dict."""
    import json

    raw = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]
