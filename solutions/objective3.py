"""Objective 3 — distance operators and an asyncpg `search_similar()`.

pgvector's three distance operators, each with its own index operator class:

    <=>  cosine distance         1 − cos(a, b)           vector_cosine_ops   range [0, 2]
    <->  Euclidean (L2) distance ‖a − b‖                 vector_l2_ops       range [0, ∞)
    <#>  negative inner product  −(a · b)                vector_ip_ops       any real number

An index can only serve `ORDER BY embedding <op> $1 LIMIT k` — ascending by the raw operator. This module turns
distances into similarities (higher = more alike), applies a minimum similarity *outside* the ordered, limited
subquery so the index still does the work, and compares the three metrics on the same data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

EMBEDDING_DIMENSIONS = 1536
#: Asking for more results than this is almost certainly a bug (and a slow query): refuse it.
MAX_TOP_K = 1000

#: metric name -> pgvector operator
OPERATORS = {"cosine": "<=>", "l2": "<->", "inner_product": "<#>"}


@dataclass(frozen=True)
class SearchResult:
    id: UUID
    content: str
    metadata: dict[str, Any]
    distance: float  # the raw operator value (lower = closer)
    similarity: float  # per-metric transform of distance (higher = closer), see similarity_from_distance()


def similarity_from_distance(distance: float, metric: str) -> float:
    """Similarity for each metric (higher is more similar):

    cosine         1 − distance            the cosine of the angle, in [−1, 1]
    inner_product  −distance               the dot product (pgvector's <#> is its negative)
    l2             1 / (1 + distance)      a monotone map of [0, ∞) onto (0, 1]; 1 = identical
    """
    # BEGIN SOLUTION hint: turn each distance into a similarity where higher means closer; the docstring gives the three
    #   transforms
    if metric == "cosine":
        return 1.0 - distance
    if metric == "inner_product":
        return -distance
    if metric == "l2":
        return 1.0 / (1.0 + distance)
    raise ValueError(f"Unknown metric {metric!r}: use one of {', '.join(OPERATORS)}.")
    # END SOLUTION


def similarity_range(metric: str) -> tuple[float, float]:
    """The values a similarity can take for `metric` (inner product is unbounded for unnormalised vectors)."""
    return {"cosine": (-1.0, 1.0), "l2": (0.0, 1.0), "inner_product": (-math.inf, math.inf)}[metric]


def validate_search(
    query_embedding: Sequence[float],
    *,
    top_k: int,
    metric: str,
    min_similarity: float | None,
    dimensions: int = EMBEDDING_DIMENSIONS,
) -> list[float]:
    """Check every argument of a search before any SQL runs; return the query vector as a list of floats.

    ValueError, with a message naming the problem, for: an empty vector or one of the wrong length, NaN or
    infinite values, an unknown metric, top_k that is not an integer in 1..MAX_TOP_K, and a min_similarity that is
    not a finite number inside the metric's similarity_range().
    """
    # BEGIN SOLUTION hint: validate every argument before any SQL: metric, top_k (an int in range, bools are not ints),
    #   the vector (length, finite) and min_similarity (finite, within similarity_range())
    if metric not in OPERATORS:
        raise ValueError(f"Unknown metric {metric!r}: use one of {', '.join(OPERATORS)}.")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}.")
    vector = [float(x) for x in query_embedding]
    if not vector:
        raise ValueError("The query embedding is empty.")
    if len(vector) != dimensions:
        raise ValueError(f"The query embedding has {len(vector)} dimensions; the column has {dimensions}.")
    if not all(math.isfinite(x) for x in vector):
        raise ValueError("The query embedding contains NaN or infinity.")
    if min_similarity is not None:
        low, high = similarity_range(metric)
        if (
            isinstance(min_similarity, bool)
            or not isinstance(min_similarity, (int, float))
            or not math.isfinite(min_similarity)
        ):
            raise ValueError(f"min_similarity must be a finite number, got {min_similarity!r}.")
        if not low <= min_similarity <= high:
            raise ValueError(
                f"min_similarity {min_similarity} is outside the {metric} similarity range [{low}, {high}]."
            )
    return vector
    # END SOLUTION


def top_k_sql(metric: str) -> str:
    """SQL for the `$2` rows nearest to the vector `$1` under `metric`, as `id, content, metadata, distance`,
    nearest first. It must order by the raw operator ascending with a LIMIT, the only shape an index can serve."""
    # BEGIN SOLUTION hint: the only shape an index can serve: order by the raw distance operator, ascending, with a
    #   LIMIT
    op = OPERATORS[metric]
    return (
        f"SELECT id, content, metadata, embedding {op} $1 AS distance "
        f"FROM embeddings ORDER BY embedding {op} $1 LIMIT $2"
    )
    # END SOLUTION


def similarity_sql(metric: str) -> str:
    """SQL expression computing the similarity from a column named `distance` (see similarity_from_distance)."""
    return {"cosine": "1 - distance", "inner_product": "-distance", "l2": "1 / (1 + distance)"}[metric]


def search_sql(metric: str) -> str:
    """SQL for a thresholded search: the top-k query as an ordered, limited subquery (so the index serves it), with
    `$3` (a minimum similarity, or NULL for none) applied outside it. Columns: id, content, metadata, distance."""
    # BEGIN SOLUTION hint: keep top_k_sql() intact as a subquery and apply the minimum similarity around it (NULL means
    #   none)
    return (
        f"SELECT id, content, metadata, distance FROM ({top_k_sql(metric)}) AS nearest "
        f"WHERE $3::float8 IS NULL OR {similarity_sql(metric)} >= $3::float8 ORDER BY distance"
    )
    # END SOLUTION


async def search_similar(
    db: asyncpg.Pool | asyncpg.Connection,
    query_embedding: Sequence[float],
    *,
    top_k: int = 10,
    metric: str = "cosine",
    min_similarity: float | None = None,
) -> list[SearchResult]:
    """The `top_k` rows of `embeddings` nearest to `query_embedding`, best first, each with its distance and
    similarity; rows below `min_similarity` (if given) are left out. Arguments are validated before any SQL runs.
    `db` is a pool or connection with the pgvector codec registered (course.database.create_pool does that)."""
    # BEGIN SOLUTION hint: validate first, run search_sql() with the vector, top_k and threshold as parameters, and
    #   build SearchResult rows
    vector = validate_search(query_embedding, top_k=top_k, metric=metric, min_similarity=min_similarity)
    rows = await db.fetch(search_sql(metric), np.asarray(vector, dtype=np.float32), top_k, min_similarity)
    return [
        SearchResult(
            r["id"],
            r["content"],
            r["metadata"],
            float(r["distance"]),
            similarity_from_distance(float(r["distance"]), metric),
        )
        for r in rows
    ]
    # END SOLUTION


async def compare_metrics(
    db: asyncpg.Pool | asyncpg.Connection, query_embedding: Sequence[float], *, top_k: int = 10
) -> dict[str, Any]:
    """Run the same query under all three metrics. Returns
    {"rankings": {metric: [ids best first]}, "overlap": {"cosine/l2": fraction of shared ids, ...}}.
    On unit-length vectors all three rank identically; on unnormalised vectors they can disagree."""
    # BEGIN SOLUTION hint: one search per metric; overlap of two rankings = ids they share / length of the shorter one
    rankings = {m: [r.id for r in await search_similar(db, query_embedding, top_k=top_k, metric=m)] for m in OPERATORS}
    names = list(OPERATORS)
    overlap = {
        f"{a}/{b}": len(set(rankings[a]) & set(rankings[b])) / max(1, min(len(rankings[a]), len(rankings[b])))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }
    return {"rankings": rankings, "overlap": overlap}
    # END SOLUTION
