"""Objective 2 beyond the basics: which queries, which baseline, which list count, which width, which build quality.

`python -m bench indexes` runs these after the main sweep (on the same scratch copy). Each part prints its table and
same-run ratios:

* query sets — the HNSW ef_search needed for recall@10 0.95 / 0.99 on three sets: section titles (~3-word headings,
  unlike any chunk), the manual's index terms, and held-out chunks (removed from the table first, so they are
  queries, not rows); and how `ef_construction` 64 / 128 / 256 (m 16) moves build time, size and those numbers;
* IVFFlat — `lists` 100 (the brief) beside pgvector's rule (rows / 1000, probes ≈ √lists to start), each probes value
  measured with the planner's choice and with the index forced (`enable_seqscan = off`), the plan named;
* width — the local model's 256 dimensions stored natively (`vector(256)`, `halfvec(256)`) against the padded
  `vector(1536)`: the same top 10, for a fraction of the time and space.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from bench.common import size
from course.quality import load_judgments
from course.experiments.scale import plan_of, timed_ids
from solutions import objective2 as obj

EF_SEARCH = (10, 20, 40, 60, 100, 200, 400, 800)


async def exact_answers(conn, queries, table: str = "embeddings") -> list[list]:
    answers = []
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_indexscan = off")
        for q in queries:
            answers.append(
                [r["id"] for r in await conn.fetch(f"SELECT id FROM {table} ORDER BY embedding <=> $1 LIMIT 10", q)]
            )
    return answers


def recall(found, truth) -> float:
    return float(np.mean([obj.recall_at_k(f, t) for f, t in zip(found, truth)]))


# ---------------------------------------------------------------------------------------------------------------------
async def query_sets(conn, titles: list[np.ndarray], embedder, n: int = 100) -> dict[str, list[np.ndarray]]:
    """Three query sets. Held-out chunks are deleted from the (scratch) table, so every set queries the same rows."""
    n = size(n, 6)
    sets = {"section titles": titles[:n]}
    try:
        terms = [j["query"] for j in load_judgments()][:n]
        sets["index terms"] = [np.asarray(v, dtype=np.float32) for v in await embedder.embed(terms, kind="query")]
    except LookupError:
        pass  # the fallback corpus has no back-of-book index
    held = await conn.fetch(
        "DELETE FROM embeddings WHERE id IN (SELECT id FROM embeddings ORDER BY md5(id::text) "
        "LIMIT $1) RETURNING embedding",
        n,
    )
    await conn.execute("VACUUM ANALYZE embeddings")
    sets["held-out chunks"] = [
        np.asarray(getattr(r["embedding"], "to_numpy", lambda v=r["embedding"]: v)(), dtype=np.float32) for r in held
    ]
    return sets


def ef_needed(curve: dict[int, float], target: float) -> str:
    return next((str(ef) for ef, r in sorted(curve.items()) if r >= target), f">{max(curve)}")


async def build_quality(conn, sets: dict[str, list]) -> tuple[pd.DataFrame, dict[str, float]]:
    """ef_construction 64 / 128 / 256 at m 16: build time, size, and per query set the ef_search reaching recall@10
    0.95 and 0.99 (only on rows the index served: with a LIMIT 10 top-k the HNSW plan holds at every ef_search here)."""
    truths = {name: await exact_answers(conn, qs) for name, qs in sets.items()}
    rows = []
    for efc in (64, 128, 256):
        await obj.drop_vector_indexes(conn)
        info = await obj.create_index(conn, "hnsw", m=16, ef_construction=efc)
        for name, qs in sets.items():
            curve, p50 = {}, {}
            for ef in EF_SEARCH:
                found, p50[ef] = await timed_ids(
                    conn, obj.top_k_sql().replace("$2", "10"), qs, settings={"hnsw.ef_search": ef}
                )
                curve[ef] = recall(found, truths[name])
            rows.append(
                {
                    "ef_construction": efc,
                    "build s": info.build_seconds,
                    "size MB": info.size_bytes / 1e6,
                    "query set": name,
                    "recall@10 at ef 40": curve[40],
                    "ef for 0.95": ef_needed(curve, 0.95),
                    "ef for 0.99": ef_needed(curve, 0.99),
                    "p50 ms at ef 100": p50[100],
                }
            )
    await obj.drop_vector_indexes(conn)
    df = pd.DataFrame(rows)
    ratios = {}
    base = df[df.ef_construction == 64].iloc[0]
    for efc in (128, 256):
        row = df[df.ef_construction == efc].iloc[0]
        ratios[f"build_ef_construction_{efc}_vs_64"] = row["build s"] / base["build s"]
    return df, ratios


# ---------------------------------------------------------------------------------------------------------------------
async def ivfflat_by_rule(conn, queries) -> tuple[pd.DataFrame, dict[str, float]]:
    """lists 100 (the brief) and lists = rows / 1000 (pgvector's rule up to 1M rows), each probes value with the
    planner's choice and with the index forced; what EXPLAIN chose in each case."""
    rows_n = await conn.fetchval("SELECT count(*) FROM embeddings")
    rule = max(1, round(rows_n / 1000))
    truth = await exact_answers(conn, queries)
    sql = obj.top_k_sql().replace("$2", "10")
    _, seq_ms = await timed_ids(conn, sql, queries, settings={"enable_indexscan": "off"})
    out = []
    for lists in (100, rule):
        await obj.drop_vector_indexes(conn)
        info = await obj.create_index(conn, "ivfflat", lists=lists)
        start = max(1, round(math.sqrt(lists)))
        for probes in sorted({1, start, 2 * start, lists // 4 or 1, lists // 2 or 1, lists} & set(range(1, lists + 1))):
            for forced in (False, True):
                settings = {"ivfflat.probes": probes, **({"enable_seqscan": "off"} if forced else {})}
                found, p50 = await timed_ids(conn, sql, queries, settings=settings)
                out.append(
                    {
                        "lists": lists,
                        "build s": info.build_seconds,
                        "size MB": info.size_bytes / 1e6,
                        "probes": probes,
                        "index": "forced" if forced else "planner's choice",
                        "served by": await plan_of(conn, sql, queries[0], settings),
                        "p50 ms": p50,
                        "recall@10": recall(found, truth),
                        "speed-up vs seq": seq_ms / p50,
                    }
                )
    await obj.drop_vector_indexes(conn)
    df = pd.DataFrame(out)
    ratios = {}
    for lists in (100, rule):
        ok = df[(df["lists"] == lists) & (df["index"] == "forced") & (df["recall@10"] >= 0.95)].sort_values("p50 ms")
        if len(ok):
            ratios[f"ivfflat_lists_{lists}_forced_speedup_0.95"] = float(ok["speed-up vs seq"].iloc[0])
    return df, ratios


# ---------------------------------------------------------------------------------------------------------------------
async def native_width(conn, queries, width: int = 256) -> tuple[pd.DataFrame | None, dict[str, float]]:
    """The padded column against the model's own width, when every dimension beyond it is zero (the local model)."""
    padded = await conn.fetchval(
        f"SELECT bool_and(vector_norm(subvector(embedding, {width + 1}, {1536 - width})) = 0) FROM embeddings"
    )
    if not padded:
        return None, {}
    await obj.drop_vector_indexes(conn)
    await conn.execute(f"""DROP TABLE IF EXISTS e{width}, h{width};
        CREATE TABLE e{width} AS
            SELECT id, subvector(embedding, 1, {width})::vector({width}) AS embedding FROM embeddings;
        CREATE TABLE h{width} AS
            SELECT id, subvector(embedding, 1, {width})::halfvec({width}) AS embedding FROM embeddings;
        ANALYZE e{width}; ANALYZE h{width}""")
    short = [q[:width] for q in queries]
    truth = await exact_answers(conn, queries)
    rows, same = [], {}
    for table, column, qs, cast in (
        ("embeddings", "vector(1536)", queries, "vector"),
        (f"e{width}", f"vector({width})", short, "vector"),
        (f"h{width}", f"halfvec({width})", short, f"halfvec({width})"),
    ):
        sql = f"SELECT id FROM {table} ORDER BY embedding <=> $1::{cast} LIMIT 10"
        exact, seq_ms = await timed_ids(conn, sql, qs, settings={"enable_indexscan": "off"})
        same[column] = sum(a == b for a, b in zip(exact, truth)) / len(truth)
        opclass = "halfvec_cosine_ops" if column.startswith("halfvec") else "vector_cosine_ops"
        started = time.perf_counter()
        await conn.execute(f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding {opclass})")
        build = time.perf_counter() - started
        found, hnsw_ms = await timed_ids(conn, sql, qs, settings={"hnsw.ef_search": 100})
        rows.append(
            {
                "column": column,
                "table MB": await conn.fetchval(f"SELECT pg_table_size('{table}') / 1e6::float8"),
                "index MB": await conn.fetchval(f"SELECT pg_relation_size('{table}_hnsw') / 1e6::float8"),
                "build s": build,
                "exact p50 ms": seq_ms,
                "hnsw p50 ms (ef 100)": hnsw_ms,
                "hnsw served by": (await plan_of(conn, sql, qs[0], {"hnsw.ef_search": 100})).split(" on ")[0],
                "recall@10 (ef 100)": recall(found, truth),
                "exact top 10 = padded's": same[column],
            }
        )
        await conn.execute(f"DROP INDEX {table}_hnsw")
    await conn.execute(f"DROP TABLE e{width}, h{width}")
    df = pd.DataFrame(rows).set_index("column")
    padded_row, native = df.loc["vector(1536)"], df.loc[f"vector({width})"]
    return df, {
        "native_exact_speedup": padded_row["exact p50 ms"] / native["exact p50 ms"],
        "native_hnsw_speedup": padded_row["hnsw p50 ms (ef 100)"] / native["hnsw p50 ms (ef 100)"],
        "native_index_size_ratio": native["index MB"] / padded_row["index MB"],
    }
