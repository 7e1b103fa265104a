"""Objective 2 benchmark: seq scan vs HNSW vs IVFFlat on the corpus, and TOAST (EXTERNAL) vs PLAIN storage.

Prints the sweep and three same-run ratios: HNSW and IVFFlat speed-up over the exact scan at recall@10 >= 0.99,
and the exact scan's speed with PLAIN storage relative to the default EXTERNAL.
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
    seq = df[df.method == "seq scan"].p50_ms.iloc[0]
    ok = df[(df.method == method) & (df.recall_at_10 >= recall)].sort_values("p50_ms")
    return (ok.parameter.iloc[0], seq / ok.p50_ms.iloc[0]) if len(ok) else None


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
        print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        results: dict[str, float] = {}
        for method in ("hnsw", "ivfflat"):
            found = speedup_at_recall(df, method)
            if found:
                print(f"RATIO {method} vs seq scan at recall@10 >= 0.99 ({found[0]}): {found[1]:.1f}x faster")
                results[f"{method}_speedup"] = found[1]
            else:
                print(f"RATIO {method}: no setting reached recall@10 >= 0.99")
        ext_ms, plain_ms = await _seq_p50(external, queries[:40]), await _seq_p50(plain, queries[:40])
        print(f"RATIO exact seq scan, EXTERNAL (TOAST) {ext_ms:.1f} ms vs PLAIN {plain_ms:.1f} ms: "
              f"PLAIN {ext_ms / plain_ms:.2f}x faster")
        results["plain_vs_external"] = ext_ms / plain_ms
        return results
    finally:
        await external.close()
        await plain.close()
