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
    # BEGIN SOLUTION hint: GIN indexes (IF NOT EXISTS): one on metadata with an operator class that serves @>, one on
    #   the english tsvector of content
    await conn.execute(
        "CREATE INDEX IF NOT EXISTS embeddings_metadata_gin ON embeddings USING gin (metadata jsonb_path_ops)"
    )
    await conn.execute(
        "CREATE INDEX IF NOT EXISTS embeddings_content_fts ON embeddings "
        f"USING gin (to_tsvector('{TEXT_CONFIG}', content))"
    )
    return ["embeddings_metadata_gin", "embeddings_content_fts"]
    # END SOLUTION


def validate_filters(filters: Any) -> dict[str, Any]:
    """Return `filters` as a dict for `metadata @> $n::jsonb`, or raise ValueError. A filter is a JSON object whose
    keys are non-empty strings and whose values are strings, numbers or booleans; None means no filter ({}).
    A string is parsed as JSON first (filters often arrive as query parameters)."""
    # BEGIN SOLUTION hint: None means no filter; JSON strings are parsed; only an object with non-empty string keys and
    #   finite scalar values is allowed
    if filters is None:
        return {}
    if isinstance(filters, str):
        try:
            filters = json.loads(filters)
        except ValueError as exc:
            raise ValueError(f"The filter is not valid JSON: {exc}") from exc
    if not isinstance(filters, Mapping):
        raise ValueError(f'The filter must be a JSON object like {{"topic": "sql"}}, not {type(filters).__name__}.')
    for key, value in filters.items():
        if not isinstance(key, str) or not key:
            raise ValueError("Filter keys must be non-empty strings.")
        if not isinstance(value, FILTER_VALUE_TYPES):
            raise ValueError(
                f"Filter value for {key!r} must be a string, number or boolean, not {type(value).__name__}."
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"Filter value for {key!r} must be a finite number.")
    return dict(filters)
    # END SOLUTION


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
    # BEGIN SOLUTION hint: HNSW filters after it collects ef_search candidates: look up hnsw.iterative_scan (SET LOCAL,
    #   in a transaction) and pgvector's README on re-sorting relaxed-order results
    async with _transaction(db) as conn:
        if iterative:
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = await conn.fetch(
            """WITH nearest AS MATERIALIZED (
                   SELECT id, embedding <=> $1 AS distance FROM embeddings
                   WHERE metadata @> $2::jsonb ORDER BY embedding <=> $1 LIMIT $3)
               SELECT id, 1 - distance AS similarity FROM nearest ORDER BY distance + 0""",
            vector,
            filters,
            top_k,
        )
    return [(r["id"], float(r["similarity"])) for r in rows]
    # END SOLUTION


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
    # BEGIN SOLUTION hint: candidates from both sides (nearest by vector, best by text, each within the filter), score
    #   every candidate with both parts, best first
    sql = f"""
        WITH q AS (SELECT websearch_to_tsquery('{TEXT_CONFIG}', $4) AS tsq),
        by_vector AS MATERIALIZED (
            SELECT id FROM embeddings WHERE metadata @> $2::jsonb ORDER BY embedding <=> $1 LIMIT $5),
        by_text AS MATERIALIZED (
            SELECT e.id FROM embeddings e, q
            WHERE e.metadata @> $2::jsonb AND to_tsvector('{TEXT_CONFIG}', e.content) @@ q.tsq
            ORDER BY ts_rank(to_tsvector('{TEXT_CONFIG}', e.content), q.tsq, 32) DESC LIMIT $5),
        scored AS (
            SELECT e.id, e.content, e.metadata,
                   1 - (e.embedding <=> $1) AS vector_similarity,
                   CASE WHEN to_tsvector('{TEXT_CONFIG}', e.content) @@ q.tsq
                        THEN ts_rank(to_tsvector('{TEXT_CONFIG}', e.content), q.tsq, 32) ELSE 0 END AS text_rank
            FROM embeddings e, q
            WHERE e.id IN (SELECT id FROM by_vector UNION SELECT id FROM by_text))
        SELECT *, $6::float8 * vector_similarity + $7::float8 * text_rank AS score
        FROM scored ORDER BY score DESC, id LIMIT $3"""
    args = (vector, filters, top_k, query_text, candidates, float(vector_weight), float(text_weight))
    async with _transaction(db) as conn:
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = await conn.fetch(sql, *args)
        if len(rows) < top_k:
            # Fewer than asked: either the filter matches fewer rows, or the index stopped early
            # (hnsw.max_scan_tuples). Check, and fall back to an exact scan in the second case.
            matching = await conn.fetchval("SELECT count(*) FROM embeddings WHERE metadata @> $1::jsonb", filters)
            if matching > len(rows):
                await conn.execute("SET LOCAL enable_indexscan = off")
                rows = await conn.fetch(sql, *args)
    return [
        HybridResult(
            r["id"],
            r["content"],
            r["metadata"],
            float(r["vector_similarity"]),
            float(r["text_rank"]),
            float(r["score"]),
        )
        for r in rows
    ]
    # END SOLUTION


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
    # BEGIN SOLUTION hint: min–max scaling of each part over these results (a constant part scales to 0, not a division
    #   by zero), then the weighted sum; dataclasses.replace keeps the raw parts; sort best first
    if not results:
        return []

    def scaled(values: list[float]) -> list[float]:
        low, high = min(values), max(values)
        return [0.0 if high == low else (v - low) / (high - low) for v in values]

    vectors = scaled([r.vector_similarity for r in results])
    texts = scaled([r.text_rank for r in results])
    rescored = [replace(r, score=vector_weight * v + text_weight * t) for r, v, t in zip(results, vectors, texts)]
    return sorted(rescored, key=lambda r: -r.score)
    # END SOLUTION


def rrf_fuse(rankings: Sequence[Sequence[Any]], k: int = RRF_K) -> list[tuple[Any, float]]:
    """Reciprocal rank fusion: each item scores Σ over rankings of 1 / (k + rank), rank starting at 1; items missing
    from a ranking get nothing from it. Returns (item, score) best first; ties keep first-seen order."""
    # BEGIN SOLUTION hint: reciprocal rank fusion: each ranking adds 1 / (k + rank) to an item, ranks start at 1;
    #   highest total first
    if k < 1:
        raise ValueError("k must be at least 1.")
    scores: dict[Any, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])
    # END SOLUTION


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
