"""Objective 2 benchmark: seq scan vs HNSW vs IVFFlat on the corpus, and TOAST (EXTERNAL) vs PLAIN storage.

Prints the sweep with the access path EXPLAIN reports for each row (an IVFFlat row with many probes is often served
by the planner's sequential scan), and same-run ratios: HNSW and IVFFlat speed-up over the exact scan at recall@10
>= 0.95 and >= 0.99, counting only rows the index served, and the exact scan with PLAIN storage against EXTERNAL.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench.common import banner, scratch_copy, title_queries
from solutions import objective2 as obj


async def _seq_p50(conn, queries) -> float:
    times = []
    for q in queries:
        started = time.perf_counter()
        await obj.top_k_ids(conn, q, 10, exact=True)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def speedup_at_recall(df: pd.DataFrame, method: str, recall: float = 0.99) -> tuple[str, float] | None:
    """The cheapest setting of `method` that reaches `recall` *through its index* (rows the planner served with a
    sequential scan measure the scan, not the index), and its speed-up over the exact scan."""
    seq = df[df.method == "seq scan"].p50_ms.iloc[0]
    ok = df[(df.method == method) & (df.recall_at_10 >= recall)]
    if "access" in df:
        ok = ok[ok.access.str.startswith("Index Scan")]
    ok = ok.sort_values("p50_ms")
    return (ok.parameter.iloc[0], seq / ok.p50_ms.iloc[0]) if len(ok) else None


async def access_paths(conn, df: pd.DataFrame, query) -> list[str]:
    """What EXPLAIN says served each benchmark row (the planner may prefer the scan to an index): the index is built
    again as the benchmark built it, each row's setting applied, one query explained."""
    paths = []
    for method in ("seq scan", "hnsw", "ivfflat"):
        part = df[df.method == method]
        if method != "seq scan":
            await obj.drop_vector_indexes(conn)
            await obj.create_index(conn, method)
        for parameter in part.parameter:
            settings = {"exact": True} if method == "seq scan" else {parameter.split("=")[0]: int(parameter.split("=")[1])}
            e = await obj.explain_top_k(conn, query, 10, **settings)
            paths.append(f"{e['access']} ({e['index']})" if e["index"] else e["access"])
    await obj.drop_vector_indexes(conn)
    return paths


async def run() -> dict[str, float]:
    banner("Objective 2 — indexes on the corpus (100 section-title queries, top 10, cosine)")
    external = await scratch_copy("bench_external")
    plain = await scratch_copy("bench_plain", storage="plain")
    try:
        _, queries = await title_queries(external)
        rows = await external.fetchval("SELECT count(*) FROM embeddings")
        df = await obj.benchmark(external, queries, k=10)
        print(f"{rows} rows; index builds: " + ", ".join(
            f"{i.kind} {i.build_seconds:.1f} s / {i.size_bytes / 1e6:.1f} MB" for i in df.attrs["indexes"]))
        df["access"] = await access_paths(external, df, queries[0])
        print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        results: dict[str, float] = {}
        for recall in (0.95, 0.99):
            for method in ("hnsw", "ivfflat"):
                found = speedup_at_recall(df, method, recall)
                if found:
                    print(f"RATIO {method} vs seq scan at recall@10 >= {recall} through the index ({found[0]}): "
                          f"{found[1]:.1f}x faster")
                    results[f"{method}_speedup_{recall}"] = found[1]
                else:
                    print(f"RATIO {method}: no setting reached recall@10 >= {recall} through its index")
        ext_ms, plain_ms = await _seq_p50(external, queries[:40]), await _seq_p50(plain, queries[:40])
        print(f"RATIO exact seq scan, EXTERNAL (TOAST) {ext_ms:.1f} ms vs PLAIN {plain_ms:.1f} ms: "
              f"PLAIN {ext_ms / plain_ms:.2f}x faster")
        results["plain_vs_external"] = ext_ms / plain_ms
        return results
    finally:
        await external.close()
        await plain.close()
