"""Objective 2 — HNSW and IVFFlat indexes, measured: build time, size, latency and recall.

An approximate index trades a little recall (the share of the true nearest neighbours it finds) for a lot of
speed. Two index types, each with a build-time and a query-time knob:

    HNSW     m (links per node, 2..100), ef_construction (4..1000, >= 2·m)   query: hnsw.ef_search (1..1000)
    IVFFlat  lists (clusters, 1..32768)                                      query: ivfflat.probes (1..lists)

Everything here is measured against the exact answer from a sequential scan.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import pandas as pd

#: metric -> operator class (the index only serves the operator of its class)
OPCLASSES = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "inner_product": "vector_ip_ops"}
OPERATORS = {"cosine": "<=>", "l2": "<->", "inner_product": "<#>"}
#: pgvector's accepted ranges (from its source: hnsw.h, ivfflat.h)
RANGES = {
    "m": (2, 100),
    "ef_construction": (4, 1000),
    "lists": (1, 32768),
    "ef_search": (1, 1000),
    "probes": (1, 32768),
}


@dataclass(frozen=True)
class IndexInfo:
    name: str
    kind: str
    build_seconds: float
    size_bytes: int


def _check_range(name: str, value: Any) -> int:
    low, high = RANGES[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}.")
    return int(value)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    return int(k)


def _check_metric(metric: str) -> str:
    if metric not in OPCLASSES:
        raise ValueError(f"Unknown metric {metric!r}: use one of {', '.join(OPCLASSES)}.")
    return metric


def index_sql(kind: str, *, metric: str = "cosine", name: str | None = None, **params: int) -> str:
    """The CREATE INDEX statement for an `hnsw` (params m, ef_construction) or `ivfflat` (params lists) index on
    embeddings.embedding. Parameters are validated against pgvector's ranges (ValueError naming the range)."""
    # BEGIN SOLUTION hint: validate the kind, the metric and each parameter against RANGES (_check_range), plus HNSW's
    #   rule relating ef_construction to m; pgvector's README shows the CREATE INDEX … USING … WITH (…) syntax and the
    #   operator classes
    _check_metric(metric)
    if kind == "hnsw":
        options = {"m": params.pop("m", 16), "ef_construction": params.pop("ef_construction", 64)}
        options = {key: _check_range(key, value) for key, value in options.items()}
        if options["ef_construction"] < 2 * options["m"]:
            raise ValueError(
                f"ef_construction must be at least 2 * m = {2 * options['m']}, got {options['ef_construction']}."
            )
    elif kind == "ivfflat":
        options = {"lists": _check_range("lists", params.pop("lists", 100))}
    else:
        raise ValueError(f"Unknown index kind {kind!r}: use 'hnsw' or 'ivfflat'.")
    if params:
        raise ValueError(f"Unexpected parameters for {kind}: {', '.join(params)}.")
    name = name or f"embeddings_{kind}_{metric}_idx"
    if not name.replace("_", "").isalnum():
        raise ValueError(f"Index names use letters, digits and _ only, got {name!r}.")
    with_clause = ", ".join(f"{key} = {value}" for key, value in options.items())
    return f"CREATE INDEX {name} ON embeddings USING {kind} (embedding {OPCLASSES[metric]}) WITH ({with_clause})"
    # END SOLUTION


async def create_index(
    conn: asyncpg.Connection, kind: str, *, metric: str = "cosine", name: str | None = None, **params: int
) -> IndexInfo:
    """Build a vector index and report its name, kind, build time (seconds) and size (bytes)."""
    sql = index_sql(kind, metric=metric, name=name, **params)
    # BEGIN SOLUTION hint: time only the build, with time.perf_counter(), in seconds; the size of a relation comes from
    #   pg_relation_size()
    name = sql.split()[2]
    started = time.perf_counter()
    await conn.execute(sql)
    seconds = time.perf_counter() - started
    size = await conn.fetchval("SELECT pg_relation_size($1::regclass)", name)
    return IndexInfo(name=name, kind=kind, build_seconds=seconds, size_bytes=size)
    # END SOLUTION


async def drop_vector_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop every HNSW or IVFFlat index on `embeddings` (found in the catalog) and return their names."""
    # BEGIN SOLUTION hint: an index's access method is in the catalog (pg_index, pg_class, pg_am); drop exactly the HNSW
    #   and IVFFlat ones on `embeddings`
    names = [
        r["name"]
        for r in await conn.fetch(
            """SELECT c.relname AS name FROM pg_index i
               JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
               WHERE i.indrelid = 'embeddings'::regclass AND a.amname IN ('hnsw', 'ivfflat') ORDER BY 1"""
        )
    ]
    for name in names:
        await conn.execute(f'DROP INDEX "{name}"')
    return names
    # END SOLUTION


@contextlib.asynccontextmanager
async def query_settings(
    conn: asyncpg.Connection, *, ef_search: int | None = None, probes: int | None = None, exact: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction whose settings last for it only: hnsw.ef_search, ivfflat.probes, and with exact=True no index
    scans (so the planner must do the exact sequential scan). `SET LOCAL` ends with the transaction."""
    # BEGIN SOLUTION hint: settings that end with their transaction: a transaction block and SET LOCAL; validate each
    #   value first; `exact` turns the planner's index scans off
    async with conn.transaction():
        if ef_search is not None:
            await conn.execute(f"SET LOCAL hnsw.ef_search = {_check_range('ef_search', ef_search)}")
        if probes is not None:
            await conn.execute(f"SET LOCAL ivfflat.probes = {_check_range('probes', probes)}")
        if exact:
            await conn.execute("SET LOCAL enable_indexscan = off")
            await conn.execute("SET LOCAL enable_bitmapscan = off")
        yield conn
    # END SOLUTION


def top_k_sql(metric: str = "cosine") -> str:
    op = OPERATORS[_check_metric(metric)]
    return f"SELECT id FROM embeddings ORDER BY embedding {op} $1 LIMIT $2"


async def top_k_ids(
    conn: asyncpg.Connection, query: Sequence[float], k: int = 10, *, metric: str = "cosine", **settings
) -> list:
    """Ids of the k nearest rows under `metric`, with query_settings(**settings) for this query only."""
    k = _check_k(k)
    async with query_settings(conn, **settings):
        return [r["id"] for r in await conn.fetch(top_k_sql(metric), np.asarray(query, dtype=np.float32), k)]


async def explain_top_k(
    conn: asyncpg.Connection, query: Sequence[float], k: int = 10, *, metric: str = "cosine", **settings
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) of the top-k query. Returns {"access": "Index Scan" | "Seq Scan" | ...,
    "index": the index name or None, "execution_ms": float, "plan": the JSON plan}."""
    k = _check_k(k)
    # BEGIN SOLUTION hint: EXPLAIN with ANALYZE and FORMAT JSON gives a plan tree: find the scan node under it; the
    #   server reports the execution time itself
    async with query_settings(conn, **settings):
        raw = await conn.fetchval(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {top_k_sql(metric)}", np.asarray(query, dtype=np.float32), k
        )
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    node = plan["Plan"]
    while "Scan" not in node["Node Type"] and node.get("Plans"):
        node = node["Plans"][0]
    return {
        "access": node["Node Type"],
        "index": node.get("Index Name"),
        "execution_ms": plan["Execution Time"],
        "plan": plan,
    }
    # END SOLUTION


def recall_at_k(approximate_ids: Sequence, exact_ids: Sequence, k: int | None = None) -> float:
    """Share of the true k nearest (the first k of `exact_ids`) found among the first k of `approximate_ids`.
    Duplicates count once; k defaults to len(exact_ids); with nothing to find (empty exact) recall is 1.0."""
    # BEGIN SOLUTION hint: recall = how many of the true first k the approximate first k found, divided by how many true
    #   neighbours there are
    k = len(exact_ids) if k is None else _check_k(k)
    truth = set(list(exact_ids)[:k])
    if not truth:
        return 1.0
    return len(set(list(approximate_ids)[:k]) & truth) / len(truth)
    # END SOLUTION


async def _measure(conn, queries, k, metric, exact_answers, **settings) -> dict[str, float]:
    latencies, recalls = [], []
    for query, truth in zip(queries, exact_answers):
        started = time.perf_counter()
        ids = await top_k_ids(conn, query, k, metric=metric, **settings)
        latencies.append((time.perf_counter() - started) * 1000)
        recalls.append(recall_at_k(ids, truth, k))
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        f"recall_at_{k}": float(np.mean(recalls)),
    }


async def benchmark(
    conn: asyncpg.Connection,
    queries: Sequence[Sequence[float]],
    *,
    k: int = 10,
    metric: str = "cosine",
    ef_search_values: Iterable[int] = (10, 20, 40, 100, 200, 400),
    probes_values: Iterable[int] = (1, 2, 5, 10, 20, 50, 100),
    hnsw_params: dict[str, Any] | None = None,
    ivfflat_params: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Sequential scan vs HNSW (each ef_search) vs IVFFlat (each probes) on the same queries.

    Returns a DataFrame with columns method, parameter, p50_ms, p95_ms, recall_at_<k>; the indexes built are in
    `df.attrs["indexes"]` (IndexInfo). Existing vector indexes are dropped first and none are left behind."""
    k = _check_k(k)
    if not queries:
        raise ValueError("benchmark() needs at least one query.")
    # BEGIN SOLUTION hint: exact answers first (no index), timed as the seq-scan row; then build each index, sweep its
    #   query-time knob, and leave no index behind
    await drop_vector_indexes(conn)
    exact_answers = [await top_k_ids(conn, q, k, metric=metric, exact=True) for q in queries]
    rows = [
        {
            "method": "seq scan",
            "parameter": "exact",
            **await _measure(conn, queries, k, metric, exact_answers, exact=True),
        }
    ]
    built = []
    hnsw = await create_index(conn, "hnsw", metric=metric, **(hnsw_params or {}))
    built.append(hnsw)
    for ef in ef_search_values:
        rows.append(
            {
                "method": "hnsw",
                "parameter": f"ef_search={ef}",
                **await _measure(conn, queries, k, metric, exact_answers, ef_search=ef),
            }
        )
    await drop_vector_indexes(conn)
    ivf = await create_index(conn, "ivfflat", metric=metric, **(ivfflat_params or {}))
    built.append(ivf)
    lists = (ivfflat_params or {}).get("lists", 100)
    for probes in probes_values:
        if probes <= lists:
            rows.append(
                {
                    "method": "ivfflat",
                    "parameter": f"probes={probes}",
                    **await _measure(conn, queries, k, metric, exact_answers, probes=probes),
                }
            )
    await drop_vector_indexes(conn)
    df = pd.DataFrame(rows)
    df.attrs["indexes"] = built
    return df
    # END SOLUTION


# ---------------------------------------------------------------------------------------------------------------------
# Smaller vectors: halfvec (2 bytes per dimension) and binary quantization (1 bit per dimension)
# ---------------------------------------------------------------------------------------------------------------------
#: The column's width: casts and bit strings must name it (an expression index serves only the exact expression).
DIMENSIONS = 1536


def _check_hnsw_build(m: int, ef_construction: int) -> None:
    """HNSW's build parameters within pgvector's ranges, and ef_construction at least 2·m (as index_sql() checks)."""
    _check_range("m", m)
    _check_range("ef_construction", ef_construction)
    if ef_construction < 2 * m:
        raise ValueError(f"ef_construction must be at least 2·m = {2 * m}; got {ef_construction}.")


async def _timed_build(conn: asyncpg.Connection, name: str, statement: str) -> IndexInfo:
    """Run one CREATE INDEX for an HNSW index called `name`; its build time and size, as create_index() reports."""
    began = time.perf_counter()
    await conn.execute(statement)
    elapsed = time.perf_counter() - began
    return IndexInfo(
        name=name,
        kind="hnsw",
        build_seconds=elapsed,
        size_bytes=await conn.fetchval("SELECT pg_relation_size($1::regclass)", name),
    )


async def create_halfvec_index(
    conn: asyncpg.Connection, *, m: int = 16, ef_construction: int = 64, name: str = "embeddings_halfvec_idx"
) -> IndexInfo:
    """An HNSW cosine index on `embedding::halfvec(1536)` (an expression index: the table keeps float32, the index
    stores 2 bytes per dimension — half the size; and halfvec can be indexed up to 4,000 dimensions where vector
    stops at 2,000). Returns its IndexInfo like create_index()."""
    _check_hnsw_build(m, ef_construction)
    # BEGIN SOLUTION hint: an HNSW expression index over the column cast to halfvec at the column's width (the
    #   expression in its own parentheses), with the halfvec cosine operator class and the WITH options (pgvector's
    #   README: "Half-Precision Indexing"); _timed_build() runs it and reports time and size
    sql = (
        f"CREATE INDEX {name} ON embeddings USING hnsw ((embedding::halfvec({DIMENSIONS})) halfvec_cosine_ops) "
        f"WITH (m = {m}, ef_construction = {ef_construction})"
    )
    return await _timed_build(conn, name, sql)
    # END SOLUTION


async def halfvec_top_k_ids(conn: asyncpg.Connection, query: Sequence[float], k: int = 10, **settings) -> list:
    """Ids of the k nearest rows by cosine distance at half precision, through the halfvec index: the ORDER BY must
    be the index's expression exactly, with the query cast the same way (query_settings(**settings) apply)."""
    k = _check_k(k)
    # BEGIN SOLUTION hint: order by the very expression the index stores, compared with the query cast the same way; any
    #   other expression is a sequential scan
    sql = f"SELECT id FROM embeddings ORDER BY embedding::halfvec({DIMENSIONS}) <=> $1::halfvec({DIMENSIONS}) LIMIT $2"
    async with query_settings(conn, **settings):
        return [r["id"] for r in await conn.fetch(sql, np.asarray(query, dtype=np.float32), k)]
    # END SOLUTION


async def create_binary_index(
    conn: asyncpg.Connection, *, m: int = 16, ef_construction: int = 64, name: str = "embeddings_bit_idx"
) -> IndexInfo:
    """An HNSW Hamming index on `binary_quantize(embedding)::bit(1536)`: one bit per dimension (its sign), 1/32 of
    float32. Returns its IndexInfo."""
    _check_hnsw_build(m, ef_construction)
    # BEGIN SOLUTION hint: an HNSW expression index over the sign bits — binary_quantize() of the column, cast to a bit
    #   string of the column's width — with the Hamming operator class (pgvector's README: "Binary Quantization");
    #   _timed_build() runs it
    sql = (
        f"CREATE INDEX {name} ON embeddings USING hnsw ((binary_quantize(embedding)::bit({DIMENSIONS})) "
        f"bit_hamming_ops) WITH (m = {m}, ef_construction = {ef_construction})"
    )
    return await _timed_build(conn, name, sql)
    # END SOLUTION


async def quantized_top_k_ids(
    conn: asyncpg.Connection, query: Sequence[float], k: int = 10, *, candidates: int = 100, **settings
) -> list:
    """Binary quantization with re-ranking: fetch `candidates` rows by Hamming distance between sign bits (through
    the bit index), then order those by exact cosine distance on the full vectors and keep k. Sign bits alone rank
    poorly; the exact re-rank of a wider candidate set buys the recall back. An HNSW scan returns at most
    hnsw.ef_search rows, so ef_search must be at least `candidates`."""
    k = _check_k(k)
    candidates = _check_k(candidates)
    if candidates < k:
        raise ValueError(f"candidates ({candidates}) must be at least k ({k}): the re-rank only reorders them.")
    # BEGIN SOLUTION hint: an inner query takes `candidates` rows by Hamming distance (<~>) between the indexed sign
    #   bits and the query's, an outer one orders those by exact cosine distance and keeps k; raise ef_search to at
    #   least `candidates`
    sql = f"""SELECT id FROM (
                  SELECT id, embedding FROM embeddings
                  ORDER BY binary_quantize(embedding)::bit({DIMENSIONS}) <~> binary_quantize($1::vector) LIMIT $3) c
              ORDER BY embedding <=> $1::vector LIMIT $2"""
    settings["ef_search"] = max(settings.get("ef_search") or 0, candidates)
    async with query_settings(conn, **settings):
        return [r["id"] for r in await conn.fetch(sql, np.asarray(query, dtype=np.float32), k, candidates)]
    # END SOLUTION
