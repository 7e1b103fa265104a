# lab-fingerprint: a4835803065ea1d6
# Starter code generated from solutions/objective4.py by tools/make_labs.py. This file is yours: fill in every TODO.
# `python -m checks N` (or check(N) in the notebook) grades it and gives hints.
"""Objective 4 — hybrid search: metadata filters, full-text relevance and vector similarity.

* A GIN index on `metadata` serves containment filters (`metadata @> '{"topic": "sql"}'`), written with parameters.
* A GIN index on `to_tsvector('english', content)` serves full-text matches, ranked with `ts_rank`.
* `hybrid_search()` combines them: score = vector_weight · similarity + text_weight · text_rank, where the text
  rank is `ts_rank(…, 32)` = rank / (rank + 1), in [0, 1). Documents without a text match still rank by vector.
* `normalize_scores()` puts both parts on one scale (min–max over the candidates) before weighing them.
* `rrf_fuse()` is the second strategy: reciprocal rank fusion, Σ 1 / (k + rank) with k = 60.
* The filtered-HNSW trap: an HNSW scan finds `ef_search` candidates and *then* filters, so a selective filter
  returns fewer than top_k rows. pgvector 0.8's `hnsw.iterative_scan` keeps scanning until enough rows match.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

EMBEDDING_DIMENSIONS = 1536
MAX_TOP_K = 1000
RRF_K = 60
TEXT_CONFIG = "english"
#: Scalar JSON values a filter may compare against (no nested objects or arrays).
FILTER_VALUE_TYPES = (str, int, float, bool)


@dataclass(frozen=True)
class HybridResult:
    id: UUID
    content: str
    metadata: dict[str, Any]
    vector_similarity: float  # cosine similarity, 1 - (embedding <=> query)
    text_rank: float  # ts_rank(..., 32), in [0, 1); 0 when the text does not match
    score: float  # vector_weight * vector_similarity + text_weight * text_rank


async def create_hybrid_indexes(conn: asyncpg.Connection) -> list[str]:
    """Create (if missing) a GIN index on `metadata` that serves `@>` and a GIN full-text index on
    `to_tsvector('english', content)`. Returns the two index names."""
    raise NotImplementedError(
        "TODO: GIN indexes (IF NOT EXISTS): one on metadata with an operator class that serves @>, one on the english tsvector of content"
    )


def validate_filters(filters: Any) -> dict[str, Any]:
    """Return `filters` as a dict for `metadata @> $n::jsonb`, or raise ValueError. A filter is a JSON object whose
    keys are non-empty strings and whose values are strings, numbers or booleans; None means no filter ({}).
    A string is parsed as JSON first (filters often arrive as query parameters)."""
    raise NotImplementedError(
        "TODO: None means no filter; JSON strings are parsed; only an object with non-empty string keys and finite scalar values is allowed"
    )


def _check_query(query_embedding: Sequence[float] | np.ndarray, top_k: int) -> np.ndarray:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}.")
    vector = np.asarray(query_embedding, dtype=np.float64)
    if vector.ndim != 1 or vector.size != EMBEDDING_DIMENSIONS or not np.all(np.isfinite(vector)):
        raise ValueError(f"The query embedding must be {EMBEDDING_DIMENSIONS} finite numbers.")
    return vector.astype(np.float32)


async def filtered_vector_search(
    db: asyncpg.Pool | asyncpg.Connection,
    query_embedding: Sequence[float] | np.ndarray,
    filters: Mapping[str, Any] | str | None = None,
    *,
    top_k: int = 10,
    iterative: bool = True,
) -> list[tuple[UUID, float]]:
    """(id, cosine similarity) of the top_k rows nearest to the query among rows whose metadata contains `filters`,
    best first. Always min(top_k, matching rows) results: with iterative=True it sets hnsw.iterative_scan =
    relaxed_order for this query (re-sorting the relaxed order). iterative=False shows the trap."""
    filters = validate_filters(filters)
    vector = _check_query(query_embedding, top_k)
    raise NotImplementedError(
        "TODO: HNSW filters after it collects ef_search candidates: look up hnsw.iterative_scan (SET LOCAL, in a transaction) and pgvector's README on re-sorting relaxed-order results"
    )


class _transaction:
    """`async with _transaction(pool_or_connection) as conn:` one connection inside one transaction."""

    def __init__(self, db):
        self.db, self._acquired, self._tx = db, None, None

    async def __aenter__(self) -> asyncpg.Connection:
        conn = self.db
        if isinstance(self.db, asyncpg.Pool):
            self._acquired = self.db.acquire()
            conn = await self._acquired.__aenter__()
        self._tx = conn.transaction()
        await self._tx.__aenter__()
        return conn

    async def __aexit__(self, *exc):
        try:
            await self._tx.__aexit__(*exc)
        finally:
            if self._acquired is not None:
                await self._acquired.__aexit__(*exc)


def _check_weights(vector_weight: float, text_weight: float) -> None:
    for name, w in (("vector_weight", vector_weight), ("text_weight", text_weight)):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {w!r}.")
    if vector_weight + text_weight <= 0:
        raise ValueError("vector_weight + text_weight must be positive.")


async def hybrid_search(
    db: asyncpg.Pool | asyncpg.Connection,
    query_embedding: Sequence[float],
    query_text: str,
    filters: Mapping[str, Any] | str | None = None,
    *,
    top_k: int = 10,
    vector_weight: float = 0.7,
    text_weight: float = 0.3,
) -> list[HybridResult]:
    """The top_k rows matching `filters` by score = vector_weight · cosine similarity + text_weight · ts_rank(…, 32)
    of `query_text` (websearch syntax, english), best first, with both parts. Rows whose text does not match get
    text_rank 0 and still rank by similarity. Always min(top_k, matching rows) results.

    ValueError for: empty query_text, negative or non-finite weights or weights summing to 0, bad filters,
    a bad query embedding or top_k."""
    filters = validate_filters(filters)
    vector = _check_query(query_embedding, top_k)
    _check_weights(vector_weight, text_weight)
    if not isinstance(query_text, str) or not query_text.strip():
        raise ValueError("query_text is empty: hybrid search needs words to match (use a vector search otherwise).")
    candidates = max(10 * top_k, 100)
    raise NotImplementedError(
        "TODO: candidates from both sides (nearest by vector, best by text, each within the filter), score every candidate with both parts, best first"
    )


def normalize_scores(
    results: Sequence[HybridResult], vector_weight: float = 0.7, text_weight: float = 0.3
) -> list[HybridResult]:
    """Re-score hybrid candidates with both parts on one scale, best first: each part (vector_similarity,
    text_rank) is min–max scaled to 0..1 over these results — (x − min) / (max − min), and 0 for a part that is the
    same for every result — then score = vector_weight · scaled similarity + text_weight · scaled rank.

    Cosine similarity and ts_rank live on different scales, so a raw weighted sum lets whichever part spreads more
    decide; scaled, a weight means what it says. The raw parts are kept; only `score` (and the order) change. The
    input is not modified. ValueError for negative or non-finite weights, or weights summing to 0."""
    _check_weights(vector_weight, text_weight)
    raise NotImplementedError(
        "TODO: min–max scaling of each part over these results (a constant part scales to 0, not a division by zero), then the weighted sum; dataclasses.replace keeps the raw parts; sort best first"
    )


def rrf_fuse(rankings: Sequence[Sequence[Any]], k: int = RRF_K) -> list[tuple[Any, float]]:
    """Reciprocal rank fusion: each item scores Σ over rankings of 1 / (k + rank), rank starting at 1; items missing
    from a ranking get nothing from it. Returns (item, score) best first; ties keep first-seen order."""
    raise NotImplementedError(
        "TODO: reciprocal rank fusion: each ranking adds 1 / (k + rank) to an item, ranks start at 1; highest total first"
    )


async def hybrid_search_rrf(
    db: asyncpg.Pool | asyncpg.Connection,
    query_embedding: Sequence[float],
    query_text: str,
    filters: Mapping[str, Any] | str | None = None,
    *,
    top_k: int = 10,
    k: int = RRF_K,
) -> list[tuple[UUID, float]]:
    """Hybrid search by reciprocal rank fusion of the vector ranking and the full-text ranking (each the best
    max(10 · top_k, 100) matching rows). Returns (id, rrf score) best first."""
    filters = validate_filters(filters)
    vector = _check_query(query_embedding, top_k)
    if not isinstance(query_text, str) or not query_text.strip():
        raise ValueError("query_text is empty.")
    depth = max(10 * top_k, 100)
    by_vector = [row_id for row_id, _ in await filtered_vector_search(db, vector, filters, top_k=min(depth, MAX_TOP_K))]
    by_text = [
        r["id"]
        for r in await db.fetch(
            f"""SELECT id FROM embeddings, websearch_to_tsquery('{TEXT_CONFIG}', $1) AS tsq
                WHERE metadata @> $2::jsonb AND to_tsvector('{TEXT_CONFIG}', content) @@ tsq
                ORDER BY ts_rank(to_tsvector('{TEXT_CONFIG}', content), tsq, 32) DESC, id LIMIT $3""",
            query_text,
            filters,
            depth,
        )
    ]
    return rrf_fuse([by_vector, by_text], k)[:top_k]
