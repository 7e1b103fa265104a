"""Ranking: the search modes, the candidate pool they rank and how each mode fuses its two signals — one home that
the service (Objective 6), the relevance evaluation (course.quality) and the benchmarks share.

    MODES                      the service's modes: vector, hybrid, rrf (and what each costs beyond vector search)
    candidates_sql()           one query's candidate pool: nearest by vector, best by words, both scores per row
    fuse(candidates, method)   the candidates scored and ordered by a method (a mode, or raw / text for comparison)
    candidates(pool, ...)      the pools of many queries (evaluation and benchmarks)

One vocabulary: *hybrid* is 0.7 · similarity + 0.3 · ts_rank after scaling each to 0..1 over the query's candidates
(min–max), which is the service's mode; *raw* is the same weighted sum of the unscaled scores (the brief's formula
as Objective 4's hybrid_search() computes it, kept to show why scaling matters). Adding a mode: its name in MODES
and MODE_COST, its computation in fuse() — the service's `mode` parameter, its OpenAPI document, the evaluation and
`python -m bench quality` follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

#: The service's search modes (POST /search?mode=...).
Mode = Literal["vector", "hybrid", "rrf"]
MODES: tuple[Mode, ...] = ("vector", "hybrid", "rrf")
#: What each mode costs beyond the vector search (hybrid and rrf add the same full-text search): a tie between modes
#: goes to the cheaper one.
MODE_COST: dict[str, int] = {"vector": 0, "hybrid": 1, "rrf": 1}
#: Every way fuse() ranks a pool: the modes, and two for comparison — ts_rank alone, and the unscaled weighted sum.
METHODS = ("vector", "text", "raw", "hybrid", "rrf")
#: The weight of similarity in hybrid and raw (the brief's 0.7 · similarity + 0.3 · ts_rank).
VECTOR_WEIGHT = 0.7
RRF_K = 60


def minmax(values: Sequence[float]) -> list[float]:
    """Scale to 0..1 over one query's candidates. All equal: 1 if they are positive (every candidate has the
    signal, equally), 0 if not (none has it) — a constant shift, so it never changes an order."""
    low, high = min(values), max(values)
    if high == low:
        return [1.0 if high > 0 else 0.0] * len(values)
    return [(v - low) / (high - low) for v in values]


def fuse(
    candidates: Sequence[dict], method: str, vector_weight: float = VECTOR_WEIGHT, rrf_k: int = RRF_K
) -> list[tuple[dict, float]]:
    """`candidates` (dicts with `vector`: cosine similarity and `text`: ts_rank, of one query) with the score of
    `method`, best first:

    vector   similarity alone
    text     ts_rank alone (only rows that match the query's words)
    hybrid   vector_weight · similarity + (1 − vector_weight) · ts_rank, each scaled to 0..1 over these candidates
    raw      the same weighted sum of the unscaled scores
    rrf      reciprocal rank fusion: Σ 1 / (rrf_k + rank) over the vector ranking and the text ranking

    Ties keep the candidates' order (sorted() is stable)."""
    if method == "vector":
        scored = [(c, c["vector"]) for c in candidates]
    elif method == "text":
        scored = [(c, c["text"]) for c in candidates if c["text"] > 0]
    elif method in ("hybrid", "raw"):
        v, t = [c["vector"] for c in candidates], [c["text"] for c in candidates]
        if method == "hybrid" and candidates:
            v, t = minmax(v), minmax(t)
        scored = [(c, vector_weight * a + (1 - vector_weight) * b) for c, a, b in zip(candidates, v, t)]
    elif method == "rrf":
        fused = {id(c): 0.0 for c in candidates}
        for signal in ("vector", "text"):
            for position, (c, _) in enumerate(fuse(candidates, signal), start=1):
                fused[id(c)] += 1.0 / (rrf_k + position)
        scored = [(c, fused[id(c)]) for c in candidates]
    else:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    return sorted(scored, key=lambda pair: -pair[1])


def rank(
    candidates: Sequence[dict], method: str, vector_weight: float = VECTOR_WEIGHT, k: int = 10, rrf_k: int = RRF_K
) -> list:
    """The ids of the top k candidates by `method` (see fuse())."""
    return [c["id"] for c, _ in fuse(candidates, method, vector_weight, rrf_k)[:k]]


def candidates_sql(filtered: bool = False) -> str:
    """One query's candidate pool: the $3 nearest rows by cosine distance (HNSW) and the $3 best matches of
    `websearch_to_tsquery($2)` (every word) by ts_rank (GIN), each row with both scores; `filtered` adds
    `metadata @> $4` to both halves. The service's hybrid and rrf modes, the evaluation and the benchmarks share it.

    A candidate's text score is its ts_rank against *any* of the query's words, not all of them: a natural question
    ("how do I stop two bookings from overlapping") rarely has every word in the passage that answers it, and with
    all words required most candidates scored 0 and the text signal ranked almost nothing (on the natural
    questions, in a one-off experiment with exact search: text alone MRR@10 0.20 with every word, 0.50 with any).
    Finding candidates still needs every word, so the GIN index keeps that half cheap; scoring them costs what it
    did."""
    where = "AND metadata @> $4::jsonb" if filtered else ""
    return f"""
    WITH q AS (SELECT websearch_to_tsquery('english', $2) AS tsq,
                      replace(websearch_to_tsquery('english', $2)::text, ' & ', ' | ')::tsquery AS any_word),
    by_vector AS MATERIALIZED (SELECT id FROM embeddings WHERE true {where} ORDER BY embedding <=> $1 LIMIT $3),
    by_text AS MATERIALIZED (
        SELECT e.id FROM embeddings e, q WHERE to_tsvector('english', e.content) @@ q.tsq {where}
        ORDER BY ts_rank(to_tsvector('english', e.content), q.tsq, 32) DESC LIMIT $3)
    SELECT e.id::text AS id, e.content, e.metadata, 1 - (e.embedding <=> $1) AS vector,
           CASE WHEN to_tsvector('english', e.content) @@ q.any_word
                THEN ts_rank(to_tsvector('english', e.content), q.any_word, 32) ELSE 0 END AS text
    FROM embeddings e, q WHERE e.id IN (SELECT id FROM by_vector UNION SELECT id FROM by_text)
    ORDER BY e.id"""


#: Candidates per signal, and the HNSW search width that finds them (recall of the 100 nearest ≈ 0.99).
POOL_SIZE = 100
POOL_EF_SEARCH = 200


async def candidates(
    pool, embedder, queries: list[str], pool_size: int = POOL_SIZE, sql: str | None = None
) -> dict[str, list[dict]]:
    """Per query: the union of the 100 nearest rows (HNSW, ef_search 200) and the 100 best `websearch_to_tsquery`
    matches (GIN), each with both scores — the candidate generation of the course's hybrid_search() and of the
    service's hybrid and rrf modes, sized for ranking the top 10. `sql`: a variant of candidates_sql() to measure
    instead (same parameters)."""
    vectors = await embedder.embed(queries, kind="query")
    found = {}
    sql = sql or candidates_sql()
    async with pool.acquire() as conn:
        for query, vector in zip(queries, vectors):
            async with conn.transaction():
                await conn.execute(f"SET LOCAL hnsw.ef_search = {POOL_EF_SEARCH}")
                rows = await conn.fetch(sql, np.asarray(vector, dtype=np.float32), query, pool_size)
            found[query] = [dict(r) for r in rows]
    return found
