"""Search quality: does hybrid search find better sections than vector search, or than full-text search alone?

On the judged queries of course/quality.py (from the manual's back-of-book index), with the local model: each query's
candidates are generated as the course's hybrid search does (nearest by vector and best by `websearch_to_tsquery`
text, with both scores), then ranked five ways. The hybrid weight is chosen on the `tune` half and every number is
reported on the `holdout` half. Prints the table, the weight sweep, and `RATIO hybrid vs vector nDCG@10: X.XX` lines.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench.common import banner, scratch_copy, size
from course import database
from course.embeddings import get_embedder
from course.quality import POOL_SIZE, candidates, candidates_sql, evaluate, load_judgments, rank
from solutions.objective4 import create_hybrid_indexes
from solutions.objective6.service import BEST_MODE, FUSION, default_min_score

METHODS = ["vector", "text", "hybrid", "normalized", "rrf"]
WEIGHTS = [round(w, 1) for w in np.linspace(0, 1, 11)]


def table(pools: dict[str, list[dict]], judged: list[dict], weights: dict[str, float]) -> pd.DataFrame:
    rows = []
    for method in METHODS:
        rankings = {j["query"]: rank(pools[j["query"]], method, weights.get(method, 0.7)) for j in judged}
        rows.append({"method": method, **evaluate(rankings, judged)})
    return pd.DataFrame(rows).set_index("method")


async def run() -> dict[str, float]:
    judged = load_judgments()[: size(10**6, 16)]
    tune = [j for j in judged if j["split"] == "tune"]
    holdout = [j for j in judged if j["split"] == "holdout"]
    embedder = get_embedder()
    banner(
        f"Search quality — {len(judged)} queries from the manual's index ({len(tune)} tune / {len(holdout)} holdout), "
        f"{embedder.model_id}"
    )
    # a copy of the corpus with the course's search indexes: the benchmark adds a column to it at the end
    conn = await scratch_copy("bench_quality")
    await create_hybrid_indexes(conn)
    await conn.execute("CREATE INDEX ON embeddings USING hnsw (embedding vector_cosine_ops)")
    pool = await database.create_pool(database.scratch_database("bench_quality"), max_size=2)
    try:
        started = time.perf_counter()
        pools = await candidates(pool, embedder, [j["query"] for j in judged])
        print(f"candidates for {len(judged)} queries in {time.perf_counter() - started:.1f} s")
    finally:
        await pool.close()

    sweep = []
    for w in WEIGHTS:
        for method in ("hybrid", "normalized"):
            rankings = {j["query"]: rank(pools[j["query"]], method, w) for j in tune}
            sweep.append({"vector weight": w, "method": method, "nDCG@10 (tune)": evaluate(rankings, tune)["nDCG@10"]})
    sweep = pd.DataFrame(sweep).pivot(index="vector weight", columns="method", values="nDCG@10 (tune)")
    chosen = {m: float(sweep[m].idxmax()) for m in ("hybrid", "normalized")}
    print("weight sweep on the tune half (nDCG@10):")
    print(sweep.to_string(float_format=lambda x: f"{x:.3f}"))
    print(
        f"best vector weight on tune: raw hybrid {chosen['hybrid']:.1f}, normalized {chosen['normalized']:.1f} "
        "(the course default is 0.7)"
    )

    default = table(pools, holdout, {"hybrid": 0.7, "normalized": 0.7})
    tuned = table(pools, holdout, chosen)
    print("\nholdout, course default weights (0.7 vector / 0.3 text):")
    print(default.to_string(float_format=lambda x: f"{x:.3f}"))
    print(f"\nholdout, weights chosen on tune (hybrid {chosen['hybrid']:.1f}, normalized {chosen['normalized']:.1f}):")
    print(tuned.loc[["hybrid", "normalized"]].to_string(float_format=lambda x: f"{x:.3f}"))
    base = default.loc["vector", "nDCG@10"]
    results = {}
    for method in ("hybrid", "normalized", "rrf", "text"):
        results[f"{method}_vs_vector_ndcg"] = default.loc[method, "nDCG@10"] / base
        print(f"RATIO {method} vs vector nDCG@10: {results[f'{method}_vs_vector_ndcg']:.2f}")

    # the service's modes, as it runs them: rows below the model's calibrated min_score dropped before ranking
    floor = default_min_score(embedder.model_id)
    floored = {q: [c for c in p if c["vector"] >= floor] for q, p in pools.items()}
    service = pd.DataFrame(
        [
            {"mode": mode, **evaluate({j["query"]: rank(floored[j["query"]], FUSION[mode]) for j in holdout}, holdout)}
            for mode in FUSION
        ]
    ).set_index("mode")
    print(f"\nthe service's modes on holdout, min_score {floor} applied (POST /search?mode=…):")
    print(service.to_string(float_format=lambda x: f"{x:.3f}"))
    best, sentences = default_mode_by_evidence(floored, holdout, BEST_MODE.get(embedder.model_id, "vector"))
    print(f"paired over the {len(holdout)} holdout queries (nDCG@10, 95% bootstrap intervals):")
    for sentence in sentences:
        print("  " + sentence)
    print(
        f"default by evidence for {embedder.model_id}: {best} — the cheapest mode no other mode beats, ties kept "
        f"(BEST_MODE says {BEST_MODE.get(embedder.model_id, 'vector')})"
    )
    results["best_mode_agrees"] = float(best == BEST_MODE.get(embedder.model_id, "vector"))
    try:
        results.update(await text_ranking_cost(conn, embedder))
    finally:
        await conn.close()
    return results


#: What each mode costs beyond the vector search: hybrid and rrf add the same full-text search.
MODE_COST = {"vector": 0, "hybrid": 1, "rrf": 1}


def default_mode_by_evidence(pools: dict[str, list[dict]], judged: list[dict], current: str) -> tuple[str, list[str]]:
    """The mode a service should default to, and the comparisons behind it: among the modes no other mode beats
    (a paired interval of nDCG@10 that excludes 0), the cheapest; between unbeaten modes of the same cost, the
    current default stays (a tie is no reason to change)."""
    from course.measure import paired_difference
    from course.quality import ndcg_at_k

    per_query = {
        mode: [ndcg_at_k(rank(pools[j["query"]], FUSION[mode]), j["relevant"]) for j in judged] for mode in FUSION
    }
    comparisons = {
        (a, b): paired_difference(a, per_query[a], b, per_query[b], "nDCG@10") for a in FUSION for b in FUSION if a < b
    }
    beaten = {b if c.direction == "higher" else a for (a, b), c in comparisons.items() if c.direction != "tie"}
    unbeaten = [m for m in FUSION if m not in beaten] or list(FUSION)
    cheapest = min(MODE_COST[m] for m in unbeaten)
    candidates_ = [m for m in unbeaten if MODE_COST[m] == cheapest]
    choice = current if current in candidates_ else candidates_[0]
    return choice, [c.sentence for c in comparisons.values()]


async def text_ranking_cost(conn, embedder) -> dict[str, float]:
    """What ranking by words costs: the candidate query with `to_tsvector(content)` recomputed per matching row (the
    course's expression index) vs a stored generated tsvector column, on run()'s copy of the corpus (`conn`)."""
    queries = [j["query"] for j in load_judgments(split="holdout")[: size(40, 4)]]
    vectors = [np.asarray(v, dtype=np.float32) for v in await embedder.embed(queries, kind="query")]

    async def timed(sql: str) -> float:
        for q, v in zip(queries[:3], vectors[:3]):  # warm
            await conn.fetch(sql, v, q, POOL_SIZE)
        started = time.perf_counter()
        for q, v in zip(queries, vectors):
            await conn.fetch(sql, v, q, POOL_SIZE)
        return (time.perf_counter() - started) / len(queries) * 1000

    expression = await timed(candidates_sql())
    await conn.execute(
        "ALTER TABLE embeddings ADD COLUMN bench_tsv tsvector "
        "GENERATED ALWAYS AS (to_tsvector('english', content)) STORED"
    )
    await conn.execute("CREATE INDEX ON embeddings USING gin (bench_tsv)")
    stored = await timed(candidates_sql().replace("to_tsvector('english', e.content)", "e.bench_tsv"))
    print(
        f"\ncandidates per query ({len(queries)} holdout queries): tsvector computed per row {expression:.1f} ms, "
        f"stored tsvector column {stored:.1f} ms"
    )
    print(f"RATIO stored tsvector column vs expression index, candidate query: {expression / stored:.2f}x faster")
    return {"stored_tsvector_speedup": expression / stored}
