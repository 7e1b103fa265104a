"""Search quality: does hybrid search find better sections than vector search, or than full-text search alone?

On the two judged sets of course/quality.py, with the local model. The manual's back-of-book index (index terms,
chunk-level nDCG@10): each query's candidates are generated as the course's hybrid search does (nearest by vector
and best by `websearch_to_tsquery` text, with both scores), then ranked five ways; the hybrid weight is chosen on
the `tune` half and every number is reported on the `holdout` half. Natural questions (page-level hit@1, hit@5,
MRR@10): the service's three modes as POST /search?top_k=10 runs them. The service's default mode is then chosen
from both sets with paired bootstrap intervals: the cheapest mode no other mode beats on either set.
Prints the tables, the weight sweep, the intervals and `RATIO …` lines.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench.common import banner, scratch_copy, size
from course import database
from course.corpus import corpus_guide
from course.embeddings import get_embedder
from course.quality import (
    evaluate,
    evaluate_pages,
    load_judgments,
    load_natural_questions,
    ndcg_at_k,
    page_scores,
    pages_of,
)
from course.ranking import METHODS, MODE_COST, MODES, POOL_SIZE, candidates, candidates_sql, fuse, rank
from solutions.objective4 import create_hybrid_indexes
from solutions.objective6.service import BEST_MODE, default_min_score

WEIGHTS = [round(w, 1) for w in np.linspace(0, 1, 11)]


def table(pools: dict[str, list[dict]], judged: list[dict], weights: dict[str, float]) -> pd.DataFrame:
    rows = []
    for method in METHODS:
        rankings = {j["query"]: rank(pools[j["query"]], method, weights.get(method, 0.7)) for j in judged}
        rows.append({"method": method, **evaluate(rankings, judged)})
    return pd.DataFrame(rows).set_index("method")


async def run() -> dict[str, float]:
    judged = load_judgments()[: size(10**6, 16)]
    natural = load_natural_questions()[: size(10**6, 12)]
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
        natural_pools = await candidates(pool, embedder, [q["query"] for q in natural])
        off_topic_pools = await candidates(pool, embedder, list(corpus_guide().off_topic))
        # what the text score was before: ts_rank against every word of the question (0 unless all of them match)
        every_word = candidates_sql().replace("q.any_word", "q.tsq")
        assert every_word != candidates_sql()
        natural_before = await candidates(pool, embedder, [q["query"] for q in natural], sql=every_word)
    finally:
        await pool.close()

    sweep = []
    for w in WEIGHTS:
        for method in ("raw", "hybrid"):
            rankings = {j["query"]: rank(pools[j["query"]], method, w) for j in tune}
            sweep.append({"vector weight": w, "method": method, "nDCG@10 (tune)": evaluate(rankings, tune)["nDCG@10"]})
    sweep = pd.DataFrame(sweep).pivot(index="vector weight", columns="method", values="nDCG@10 (tune)")
    chosen = {m: float(sweep[m].idxmax()) for m in ("raw", "hybrid")}
    print("weight sweep on the tune half (nDCG@10):")
    print(sweep.to_string(float_format=lambda x: f"{x:.3f}"))
    print(
        f"best vector weight on tune: raw sum {chosen['raw']:.1f}, hybrid (min–max) {chosen['hybrid']:.1f} "
        "(the course default is 0.7)"
    )

    default = table(pools, holdout, {"raw": 0.7, "hybrid": 0.7})
    tuned = table(pools, holdout, chosen)
    print("\nholdout, course default weights (0.7 vector / 0.3 text):")
    print(default.to_string(float_format=lambda x: f"{x:.3f}"))
    print(f"\nholdout, weights chosen on tune (raw {chosen['raw']:.1f}, hybrid {chosen['hybrid']:.1f}):")
    print(tuned.loc[["raw", "hybrid"]].to_string(float_format=lambda x: f"{x:.3f}"))
    base = default.loc["vector", "nDCG@10"]
    results = {}
    for method in ("raw", "hybrid", "rrf", "text"):
        results[f"{method}_vs_vector_ndcg"] = default.loc[method, "nDCG@10"] / base
        print(f"RATIO {method} vs vector nDCG@10: {results[f'{method}_vs_vector_ndcg']:.2f}")

    # the service's modes, as it runs them: rows below the model's calibrated min_score dropped before ranking
    floor = default_min_score(embedder.model_id)
    natural_tune = [q for q in natural if q["split"] == "tune"]
    rule = calibrated_floor(natural_pools, natural_tune)
    off_tops = [max(c["vector"] for c in p) for p in off_topic_pools.values()]
    print(
        f"min_score for {embedder.model_id}: {floor} in CALIBRATED_MIN_SCORE; the rule (5th percentile of the tune "
        f"questions' best answer-chunk similarity, rounded down to 0.05) gives {rule:.2f}; off-topic questions' best "
        f"match: {', '.join(f'{t:.2f}' for t in sorted(off_tops))}"
    )
    results["min_score_rule_agrees"] = float(abs(rule - floor) < 1e-9)
    floored = {q: [c for c in p if c["vector"] >= floor] for q, p in pools.items()}
    service = pd.DataFrame(
        [
            {"mode": mode, **evaluate({j["query"]: rank(floored[j["query"]], mode) for j in holdout}, holdout)}
            for mode in MODES
        ]
    ).set_index("mode")
    print(f"\nthe service's modes on holdout, min_score {floor} applied (POST /search?mode=…):")
    print(service.to_string(float_format=lambda x: f"{x:.3f}"))

    # natural questions, page level, as POST /search?top_k=10 answers them
    natural_floored = {q: [c for c in p if c["vector"] >= floor] for q, p in natural_pools.items()}
    natural_pages = {
        mode: {q: pages_of([c for c, _ in fuse(p, mode)[:10]]) for q, p in natural_floored.items()} for mode in MODES
    }
    banner(
        f"Natural questions — {len(natural)} written and judged by page (course/judged/), the service's modes, "
        f"top 10, min_score {floor}"
    )
    for split in ("tune", "holdout"):
        part = [q for q in natural if q["split"] == split]
        frame = pd.DataFrame([{"mode": m, **evaluate_pages(natural_pages[m], part)} for m in MODES]).set_index("mode")
        print(f"{split} ({len(part)} questions):")
        print(frame.to_string(float_format=lambda x: f"{x:.3f}"))
    natural_holdout = [q for q in natural if q["split"] == "holdout"]
    by_kind = pd.DataFrame(
        [
            {"kind": kind, "questions": len(part), **evaluate_pages(natural_pages[default_mode], part)}
            for kind in sorted({q["kind"] for q in natural})
            for default_mode in [BEST_MODE.get(embedder.model_id, "vector")]
            if (part := [q for q in natural if q["kind"] == kind])
        ]
    ).set_index("kind")
    print(f"by kind of question, all {len(natural)}, mode {BEST_MODE.get(embedder.model_id, 'vector')}:")
    print(by_kind.to_string(float_format=lambda x: f"{x:.3f}"))
    for mode in MODES:
        results[f"natural_{mode}_mrr_holdout"] = evaluate_pages(natural_pages[mode], natural_holdout)["MRR@10"]
        results[f"natural_{mode}_hit5_holdout"] = evaluate_pages(natural_pages[mode], natural_holdout)["hit@5"]

    from course.experiments.measure import paired_difference

    before_pages = {
        q: pages_of([c for c, _ in fuse([c for c in p if c["vector"] >= floor], "rrf")[:10]])
        for q, p in natural_before.items()
    }
    for split, part in (("holdout", natural_holdout), ("all", natural)):
        after_scores = [page_scores(natural_pages["rrf"][q["query"]], q["pages"])["MRR@10"] for q in part]
        before_scores = [page_scores(before_pages[q["query"]], q["pages"])["MRR@10"] for q in part]
        comparison = paired_difference(
            "text scored by any word", after_scores, "by every word", before_scores, f"rrf MRR@10 ({split})"
        )
        print("  " + comparison.sentence)
        results[f"any_word_gain_{split}"] = comparison.mean
    per_query: dict[str, dict[str, list[float]]] = {
        "index terms, nDCG@10": {
            mode: [ndcg_at_k(rank(floored[j["query"]], mode), j["relevant"]) for j in holdout] for mode in MODES
        },
        "natural questions, MRR@10": {
            mode: [page_scores(natural_pages[mode][q["query"]], q["pages"])["MRR@10"] for q in natural_holdout]
            for mode in MODES
        },
    }
    current = BEST_MODE.get(embedder.model_id, "vector")
    best, sentences = default_mode_by_evidence(per_query, current)
    print(
        f"\npaired over the holdout halves ({len(holdout)} index terms, {len(natural_holdout)} questions), "
        "95% intervals:"
    )
    for sentence in sentences:
        print("  " + sentence)
    print(
        f"default by evidence for {embedder.model_id}: {best} — the cheapest mode no other mode beats on either set, "
        f"ties kept (BEST_MODE says {current})"
    )
    results["best_mode_agrees"] = float(best == current)
    try:
        results.update(await context_in_chunks(conn, embedder, natural_holdout, holdout, floor))
        results.update(await without_the_manuals_name(embedder, natural_holdout, floor))
        results.update(await text_ranking_cost(conn, embedder))
    finally:
        await conn.close()
    return results


def calibrated_floor(pools: dict[str, list[dict]], questions: list[dict]) -> float:
    """A model's min_score, from its own similarity scale: the 5th percentile, over the questions, of the best cosine
    similarity any chunk of an answer page reaches, rounded down to 0.05 (WordLlama: 0.35). Questions with no answer
    chunk among their candidates do not count."""
    best = [
        max(c["vector"] for c in answer)
        for q in questions
        if (answer := [c for c in pools[q["query"]] if c["metadata"]["page"] in q["pages"]])
    ]
    return float(np.floor(np.percentile(best, 5) * 20) / 20) if best else float("nan")


async def without_the_manuals_name(embedder, natural: list[dict], floor: float) -> dict[str, float]:
    """Questions that name PostgreSQL ("how do I … in PostgreSQL?") with that word taken out before searching: every
    page of the manual is about PostgreSQL, and the word pulls the preface and the history pages up (issue 32)."""
    import re

    from course.experiments.measure import paired_difference

    def without(question: str) -> str:
        stripped = re.sub(r"(?i)\b(in |with |on |for |does |do |of )?postgre(s|sql)('s)?\b", "", question).strip()
        return re.sub(r"\s+", " ", stripped) or question

    named = sum(without(q["query"]) != q["query"] for q in natural)
    pool = await database.create_pool(database.scratch_database("bench_quality"), max_size=2)
    try:
        asked = await candidates(pool, embedder, [q["query"] for q in natural])
        stripped = await candidates(pool, embedder, sorted({without(q["query"]) for q in natural}))
    finally:
        await pool.close()
    banner(f"Questions without the manual's own name ({named} of {len(natural)} holdout questions say PostgreSQL)")

    def scores(found: dict[str, list[dict]], mode: str, text=lambda q: q) -> list[float]:
        top = {q["query"]: [c for c in found[text(q["query"])] if c["vector"] >= floor] for q in natural}
        return [
            page_scores(pages_of([c for c, _ in fuse(top[q["query"]], mode)[:10]]), q["pages"])["MRR@10"]
            for q in natural
        ]

    results = {}
    for mode in ("rrf", "vector"):
        comparison = paired_difference(
            "without the word PostgreSQL",
            scores(stripped, mode, without),
            "as asked",
            scores(asked, mode),
            f"MRR@10, {mode}",
        )
        print("  " + comparison.sentence)
        results[f"without_name_{mode}"] = comparison.mean
    return results


async def context_in_chunks(conn, embedder, natural: list[dict], judged: list[dict], floor: float) -> dict[str, float]:
    """Chunks that carry their context (issue 32): each chunk embedded after its page title and section heading, and
    the title and heading weighted above the body (`setweight` A vs D) in its full-text document. Measured against
    the course's chunks on both holdout sets, in the default mode (rrf) and vector mode, paired over queries."""
    from course.experiments.measure import paired_difference

    banner("Chunks that carry their context: title and section embedded with the text, and weighted in full text")
    rows = await conn.fetch("SELECT id, content, metadata->>'title' AS t, metadata->>'section' AS s FROM embeddings")
    heading = [r["t"] if r["s"] in (None, r["t"]) else f"{r['t']} — {r['s']}" for r in rows]
    vectors = await embedder.embed([f"{h}\n{r['content']}" for h, r in zip(heading, rows)])
    await conn.execute("ALTER TABLE embeddings ADD COLUMN ctx_embedding vector(1536), ADD COLUMN ctx_text tsvector")
    await conn.executemany(
        "UPDATE embeddings SET ctx_embedding = $2 WHERE id = $1",
        [(r["id"], np.asarray(v, dtype=np.float32)) for r, v in zip(rows, vectors)],
    )
    await conn.execute(
        "UPDATE embeddings SET ctx_text = setweight(to_tsvector('english', coalesce(metadata->>'title', '') || ' ' "
        "|| coalesce(metadata->>'section', '')), 'A') || setweight(to_tsvector('english', content), 'D')"
    )
    await conn.execute("CREATE INDEX ON embeddings USING hnsw (ctx_embedding vector_cosine_ops)")
    await conn.execute("CREATE INDEX ON embeddings USING gin (ctx_text)")
    await conn.execute("ANALYZE embeddings")
    base = candidates_sql()
    in_vector = base.replace("e.embedding <=>", "e.ctx_embedding <=>").replace(
        "ORDER BY embedding <=>", "ORDER BY ctx_embedding <=>"
    )
    variants = {
        "the course's chunks": base,
        "context embedded": in_vector,
        "context weighted in full text": base.replace("to_tsvector('english', e.content)", "e.ctx_text"),
        "both": in_vector.replace("to_tsvector('english', e.content)", "e.ctx_text"),
    }
    assert len(set(variants.values())) == len(variants)
    pool = await database.create_pool(database.scratch_database("bench_quality"), max_size=2)
    scores: dict[str, list[float]] = {}
    try:
        for name, sql in variants.items():
            questions = await candidates(pool, embedder, [q["query"] for q in natural], sql=sql)
            terms = await candidates(pool, embedder, [j["query"] for j in judged], sql=sql)
            for mode in ("rrf", "vector"):
                asked = {q: [c for c in p if c["vector"] >= floor] for q, p in questions.items()}
                looked_up = {q: [c for c in p if c["vector"] >= floor] for q, p in terms.items()}
                scores[f"{name}|{mode}|questions"] = [
                    page_scores(pages_of([c for c, _ in fuse(asked[q["query"]], mode)[:10]]), q["pages"])["MRR@10"]
                    for q in natural
                ]
                scores[f"{name}|{mode}|terms"] = [
                    ndcg_at_k(rank(looked_up[j["query"]], mode), j["relevant"]) for j in judged
                ]
    finally:
        await pool.close()
    frame = pd.DataFrame(
        [
            {
                "chunks": name,
                "mode": mode,
                "natural questions MRR@10": float(np.mean(scores[f"{name}|{mode}|questions"])),
                "index terms nDCG@10": float(np.mean(scores[f"{name}|{mode}|terms"])),
            }
            for name in variants
            for mode in ("rrf", "vector")
        ]
    ).set_index(["chunks", "mode"])
    print(f"holdout: {len(natural)} natural questions, {len(judged)} index terms, min_score {floor}")
    print(frame.to_string(float_format=lambda x: f"{x:.3f}"))
    results = {}
    for name in list(variants)[1:]:
        for mode in ("rrf", "vector"):
            for judged_set, metric in (("questions", "natural questions MRR@10"), ("terms", "index terms nDCG@10")):
                comparison = paired_difference(
                    name,
                    scores[f"{name}|{mode}|{judged_set}"],
                    "the course's chunks",
                    scores[f"the course's chunks|{mode}|{judged_set}"],
                    f"{metric}, {mode}",
                )
                print("  " + comparison.sentence)
                results[f"context_{name}_{mode}_{judged_set}"] = comparison.mean
    return results


def default_mode_by_evidence(per_query: dict[str, dict[str, list[float]]], current: str) -> tuple[str, list[str]]:
    """The mode a service should default to, and the comparisons behind it. `per_query`: for each judged set, each
    mode's per-query scores (same queries, same order). A mode is beaten when another mode's paired 95% interval
    excludes 0 on any set; among the unbeaten, the cheapest; between unbeaten modes of the same cost, the current
    default stays (a tie is no reason to change)."""
    from course.experiments.measure import paired_difference

    modes = list(MODES)
    beaten, sentences = set(), []
    for name, scores in per_query.items():
        for a in modes:
            for b in modes:
                if a < b:
                    c = paired_difference(a, scores[a], b, scores[b], name)
                    sentences.append(c.sentence)
                    if c.direction != "tie":
                        beaten.add(b if c.direction == "higher" else a)
    unbeaten = [m for m in modes if m not in beaten] or modes
    cheapest = min(MODE_COST[m] for m in unbeaten)
    candidates_ = [m for m in unbeaten if MODE_COST[m] == cheapest]
    return (current if current in candidates_ else candidates_[0]), sentences


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
