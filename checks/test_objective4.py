"""Checks for Objective 4 — GIN indexes, validated filters, filtered vector search, hybrid scores and RRF."""

from __future__ import annotations

import math

import numpy as np
import pytest

from checks.support import objective, random_vectors, seed

#: The objective's name in `make check` and grade reports (read from this line, not imported).
TITLE = "hybrid search"
lab = objective(4)

WORDS = ["vacuum", "index", "backup", "replication", "json", "trigger"]


def corpus(n: int):
    """n documents: two topic words each, a topic and a language in metadata, clustered unit vectors."""
    contents, metadata = [], []
    for i in range(n):
        a, b = WORDS[i % 6], WORDS[(i // 6) % 6]
        contents.append(f"Notes about {a} and {b}, item {i}.")
        metadata.append(
            {
                "topic": "rare" if i % 100 == 7 else ("sql" if i % 3 == 0 else "other"),
                "language": "en" if i % 2 == 0 else "de",
                "n": i,
                "even": i % 2 == 0,
                "note": "it's" if i % 5 == 0 else "plain",
            }
        )
    return contents, metadata, random_vectors(n, seed=4, normalised=True)


@pytest.fixture
async def docs(conn):
    contents, metadata, vectors = corpus(150)
    ids = await seed(conn, vectors, contents, metadata)
    return {
        "ids": ids,
        "contents": contents,
        "metadata": metadata,
        "vectors": vectors,
        "by_id": dict(zip(ids, range(150))),
    }


async def text_ranks(conn, query_text: str) -> dict:
    """Independent: ts_rank(…, 32) of every matching row, computed by the check in SQL."""
    rows = await conn.fetch(
        """SELECT id, ts_rank(to_tsvector('english', content), websearch_to_tsquery('english', $1), 32) AS r
           FROM embeddings WHERE to_tsvector('english', content) @@ websearch_to_tsquery('english', $1)""",
        query_text,
    )
    return {r["id"]: r["r"] for r in rows}


def expected_hybrid(docs, ranks, query, filters, top_k, wv, wt):
    scored = []
    for row_id, i in docs["by_id"].items():
        if all(docs["metadata"][i].get(k) == v for k, v in (filters or {}).items()):
            sim = float(docs["vectors"][i].astype(np.float64) @ query.astype(np.float64))
            scored.append((wv * sim + wt * ranks.get(row_id, 0.0), row_id, sim))
    scored.sort(key=lambda t: -t[0])
    return scored[:top_k]


@pytest.mark.hint("GIN on metadata (jsonb_ops or jsonb_path_ops serve @>) and GIN on to_tsvector('english', content).")
async def test_gin_indexes_serve_containment_and_full_text(lab, conn, docs):
    """create_hybrid_indexes() builds a GIN index used by `metadata @>` and one on to_tsvector('english', content)"""
    names = await lab.create_hybrid_indexes(conn)
    assert len(names) == 2
    defs = {
        r["indexname"]: r["indexdef"]
        for r in await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'embeddings'")
    }
    assert any("USING gin (metadata" in d for d in defs.values()), f"no GIN index on metadata: {defs}"
    assert any("USING gin (to_tsvector('english'::regconfig, content))" in d for d in defs.values()), (
        "no full-text GIN index"
    )
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch("EXPLAIN SELECT id FROM embeddings WHERE metadata @> $1::jsonb", {"topic": "sql"})
        )
        fts = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT id FROM embeddings "
                "WHERE to_tsvector('english', content) @@ websearch_to_tsquery('english', 'vacuum')"
            )
        )
    assert "Bitmap Index Scan" in plan, f"the metadata filter is not served by a GIN index:\n{plan}"
    assert "Bitmap Index Scan" in fts, f"the text match is not served by a GIN index:\n{fts}"
    assert await lab.create_hybrid_indexes(conn) == names, "running it twice must be safe"


@pytest.mark.hint("None → {}; parse JSON strings; require an object with non-empty string keys and scalar values.")
@pytest.mark.parametrize(
    "bad",
    [
        ["topic", "sql"],
        "not json {",
        '["a"]',
        {"topic": {"$ne": "x"}},
        {"topic": ["a", "b"]},
        {"": "x"},
        {"n": math.nan},
        42,
    ],
)
def test_bad_filters_are_refused(lab, bad):
    """validate_filters() refuses non-objects, malformed JSON, nested values, empty keys and NaN"""
    assert lab.validate_filters('{"topic": "sql", "n": 3}') == {"topic": "sql", "n": 3}, "JSON strings are parsed"
    assert lab.validate_filters(None) == {}
    with pytest.raises(ValueError):
        lab.validate_filters(bad)


@pytest.mark.hint(
    "An HNSW scan filters after it has collected ef_search candidates; pgvector 0.8's iterative index "
    "scans keep going until enough rows match. Always min(top_k, matching rows), best first.",
    more="In one transaction: SET LOCAL hnsw.iterative_scan = relaxed_order, then the filtered query as a "
    "materialized CTE, re-sorted outside it.",
)
@pytest.mark.points(3)
async def test_selective_filter_with_hnsw_still_returns_top_k(lab, conn):
    """filtered_vector_search() returns min(top_k, matches), all matching, in exact order, even with HNSW"""
    contents, metadata, vectors = corpus(2000)
    ids = await seed(conn, vectors, contents, metadata)
    await conn.execute("CREATE INDEX ON embeddings USING hnsw (embedding vector_cosine_ops)")
    await conn.execute("ANALYZE embeddings")
    query = random_vectors(1, seed=41, normalised=True)[0]
    for filters, top_k in (
        ({"topic": "rare"}, 10),
        ({"topic": "rare", "language": "de"}, 10),
        ({"topic": "sql"}, 10),
        ({"topic": "nothing-matches"}, 5),
    ):
        matching = [i for i, m in enumerate(metadata) if all(m.get(k) == v for k, v in filters.items())]
        results = await lab.filtered_vector_search(conn, query, filters, top_k=top_k)
        assert len(results) == min(top_k, len(matching)), (
            f"{filters}: {len(results)} results, expected {min(top_k, len(matching))} ({len(matching)} rows match)"
        )
        exact = sorted(matching, key=lambda i: -float(vectors[i] @ query))[:top_k]
        if filters == {"topic": "rare"}:  # small enough for the iterative scan to be exact
            assert [r[0] for r in results] == [ids[i] for i in exact], "wrong rows or order"
        assert all(metadata[ids.index(r[0])].get("topic") == filters["topic"] for r in results)
        sims = [r[1] for r in results]
        assert sims == sorted(sims, reverse=True), "results must be ordered best first"


@pytest.mark.hint(
    "score = vector_weight · (1 - (embedding <=> q)) "
    "+ text_weight · ts_rank(to_tsvector(...), websearch_to_tsquery(...), 32)"
)
@pytest.mark.points(3)
async def test_hybrid_scores_equal_the_formula(lab, conn, docs):
    """hybrid_search() returns the true top-k by 0.7·similarity + 0.3·ts_rank, with both parts"""
    query = random_vectors(1, seed=42, normalised=True)[0]
    ranks = await text_ranks(conn, "vacuum backup")
    assert 0 < len(ranks) < 100
    results = await lab.hybrid_search(conn, query, "vacuum backup", top_k=8)
    expected = expected_hybrid(docs, ranks, query, None, 8, 0.7, 0.3)
    assert [r.id for r in results] == [e[1] for e in expected], "not the top 8 by the combined score"
    for r, (score, _, sim) in zip(results, expected):
        assert r.vector_similarity == pytest.approx(sim, abs=1e-5), (
            f"vector_similarity {r.vector_similarity:.6f}, expected 1 - cosine distance = {sim:.6f}"
        )
        rank = ranks.get(r.id, 0.0)
        assert r.text_rank == pytest.approx(rank, abs=1e-6), (
            f"text_rank {r.text_rank:.6g}, expected ts_rank(…, 32) = {rank:.6g}"
            + (" (this row does not match the query: its text_rank is 0)" if not rank else "")
        )
        assert r.score == pytest.approx(score, abs=1e-5), (
            f"score {r.score:.6f}, expected 0.7 · {sim:.4f} + 0.3 · {rank:.4f} = {score:.6f}"
        )
    assert any(r.text_rank > 0 for r in results) and any(r.text_rank == 0 for r in results), (
        "rows with and without a text match both appear"
    )


@pytest.mark.hint("Pass the weights into the SQL; a text weight of 1 puts text matches first.")
async def test_weights_change_the_order(lab, conn, docs):
    """the weights decide the order: text-only puts matches first, vector-only follows similarity"""
    query = random_vectors(1, seed=43, normalised=True)[0]
    ranks = await text_ranks(conn, "replication")
    text_only = await lab.hybrid_search(conn, query, "replication", top_k=10, vector_weight=0.0, text_weight=1.0)
    vector_only = await lab.hybrid_search(conn, query, "replication", top_k=10, vector_weight=1.0, text_weight=0.0)
    assert all(r.text_rank > 0 for r in text_only), "with text_weight 1 the text matches come first"
    assert [r.id for r in vector_only] == [e[1] for e in expected_hybrid(docs, ranks, query, None, 10, 1.0, 0.0)]
    assert [r.id for r in text_only] != [r.id for r in vector_only]


@pytest.mark.hint("Rows without a text match get text_rank 0 and still rank by vector similarity.")
async def test_no_text_match_still_ranks_by_vector_within_the_filter(lab, conn, docs):
    """a query whose words match nothing returns the filter's nearest rows by similarity"""
    query = random_vectors(1, seed=44, normalised=True)[0]
    results = await lab.hybrid_search(conn, query, "zebra unicorn", {"language": "de"}, top_k=6)
    expected = expected_hybrid(docs, {}, query, {"language": "de"}, 6, 0.7, 0.3)
    assert [r.id for r in results] == [e[1] for e in expected], "not the filter's nearest rows by vector similarity"
    for r in results:
        assert r.text_rank == 0, (
            f"text_rank is {r.text_rank!r} for a row that does not match 'zebra unicorn': a row without a text "
            "match gets text_rank 0 (only rows where the tsvector @@ the tsquery have a rank)"
        )
        assert r.metadata["language"] == "de", f"a row outside the filter {{'language': 'de'}}: {r.metadata}"
    few = await lab.hybrid_search(conn, query, "vacuum", {"topic": "rare"}, top_k=10)
    assert len(few) == sum(m["topic"] == "rare" for m in docs["metadata"]), "min(top_k, matching rows)"


def _scored(lab, parts):
    """Hybrid candidates with these (vector_similarity, text_rank) parts and a placeholder score."""
    return [
        lab.HybridResult(id=f"r{i}", content=f"row {i}", metadata={}, vector_similarity=v, text_rank=t, score=0.0)
        for i, (v, t) in enumerate(parts)
    ]


@pytest.mark.hint(
    "Scale each part over the candidates to 0..1 — (x − min) / (max − min) — then weigh the scaled parts.",
    more="Per part: the smallest and largest value over the results, then (value − smallest) / "
    "(largest − smallest); a new result with dataclasses.replace(…, score=…); sorted highest first.",
)
@pytest.mark.points(2)
def test_normalized_scores_are_min_max_then_weights(lab):
    """normalize_scores() scales both parts to 0..1 over the candidates, weighs them, and keeps the raw parts"""
    parts = [(0.80, 0.00), (0.70, 0.05), (0.40, 0.09), (0.30, 0.00), (0.55, 0.02)]
    given = _scored(lab, parts)
    out = lab.normalize_scores(given, 0.6, 0.4)
    v, t = np.array([p[0] for p in parts]), np.array([p[1] for p in parts])
    expected = 0.6 * (v - v.min()) / (v.max() - v.min()) + 0.4 * (t - t.min()) / (t.max() - t.min())
    order = np.argsort(-expected, kind="stable")
    assert [r.id for r in out] == [f"r{i}" for i in order], "best first by the scaled, weighted score"
    assert [r.score for r in out] == pytest.approx(list(expected[order])), (
        "score = w_v · scaled similarity + w_t · scaled rank"
    )
    assert [(r.vector_similarity, r.text_rank) for r in out] == [parts[i] for i in order], "the raw parts are kept"
    assert [r.score for r in given] == [0.0] * len(parts), "the input results must not be modified"


@pytest.mark.hint("A part that is the same for every candidate carries no information: it scales to 0, not to 0 / 0.")
def test_a_constant_part_scales_to_zero_not_nan(lab):
    """normalize_scores() with no text match at all, one candidate, or none: finite scores, vector order"""
    out = lab.normalize_scores(_scored(lab, [(0.8, 0.0), (0.6, 0.0), (0.7, 0.0)]), 0.7, 0.3)
    assert [r.id for r in out] == ["r0", "r2", "r1"]
    assert [r.score for r in out] == pytest.approx([0.7, 0.35, 0.0]), "no text match: the text part adds 0 to every row"
    assert [r.score for r in lab.normalize_scores(_scored(lab, [(0.5, 0.1)]), 0.7, 0.3)] == [0.0]
    assert lab.normalize_scores([], 0.7, 0.3) == []


@pytest.mark.hint(
    "After scaling, the weights decide: text weight 1 orders by text rank, vector weight 1 by similarity."
)
def test_after_scaling_the_weights_mean_what_they_say(lab):
    """normalize_scores(): raw text ranks are tiny next to similarities, yet weights of 0.5 / 0.5 balance them"""
    parts = [(0.80, 0.00), (0.70, 0.05), (0.40, 0.09), (0.30, 0.00)]  # near, both, words, far
    assert [r.id for r in lab.normalize_scores(_scored(lab, parts), 1.0, 0.0)] == ["r0", "r1", "r2", "r3"]
    assert [r.id for r in lab.normalize_scores(_scored(lab, parts), 0.0, 1.0)][:2] == ["r2", "r1"]
    assert [r.id for r in lab.normalize_scores(_scored(lab, parts), 0.5, 0.5)] == ["r1", "r2", "r0", "r3"], (
        "good on both scaled parts (r1) must beat best on one (r0 by similarity, r2 by text)"
    )
    for bad in ((-0.1, 1.0), (0.0, 0.0), (float("nan"), 0.5)):
        with pytest.raises(ValueError):
            lab.normalize_scores(_scored(lab, parts), *bad)


@pytest.mark.hint("RRF score = Σ 1 / (k + rank), rank from 1; sort by score, highest first.")
def test_rrf_fuses_a_hand_made_case(lab):
    """rrf_fuse() computes reciprocal rank fusion exactly"""
    fused = lab.rrf_fuse([["a", "b", "c"], ["c", "a", "d"]], k=60)
    expected = {"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 63}
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    for item, score in fused:
        assert score == pytest.approx(expected[item])
    assert lab.rrf_fuse([["x"], []], k=1) == [("x", 0.5)]


@pytest.mark.hint("Send filters as one jsonb parameter (metadata @> $n::jsonb); never build SQL from keys or values.")
@pytest.mark.points(2)
async def test_hostile_filters_return_nothing_extra(lab, conn, docs):
    """filter keys and values containing quotes or SQL match nothing and break nothing"""
    query = random_vectors(1, seed=45, normalised=True)[0]
    for hostile in (
        {"topic": "x' OR '1'='1"},
        {"topic') OR true; --": "sql"},
        {"topic": "sql'; DROP TABLE embeddings; --"},
    ):
        assert await lab.hybrid_search(conn, query, "vacuum", hostile, top_k=5) == []
        assert await lab.filtered_vector_search(conn, query, hostile, top_k=5) == []
    assert await conn.fetchval("SELECT count(*) FROM embeddings") == 150
    only_sql = await lab.hybrid_search(conn, query, "vacuum", '{"topic": "sql"}', top_k=20)
    assert only_sql and all(r.metadata["topic"] == "sql" for r in only_sql)


@pytest.mark.hint(
    "A filter's values keep their JSON types: the number 7 is not the string '7', true is not 'true'. "
    "metadata @> $n::jsonb compares them as JSON."
)
@pytest.mark.points(2)
async def test_filters_with_numbers_booleans_and_quotes_match_exactly(lab, conn, docs):
    """filters with numbers, booleans and quotes match exactly the rows that have those values"""
    query = random_vectors(1, seed=46, normalised=True)[0]
    cases = [
        ({"n": 7}, lambda m: m["n"] == 7),
        ({"n": "7"}, lambda m: False),
        ({"even": True, "topic": "sql"}, lambda m: m["even"] and m["topic"] == "sql"),
        ({"even": False}, lambda m: not m["even"]),
        ({"note": "it's"}, lambda m: m["note"] == "it's"),
        ('{"n": 12.0}', lambda m: m["n"] == 12),
    ]
    for filters, wanted in cases:
        expected = sorted(str(docs["ids"][i]) for i, m in enumerate(docs["metadata"]) if wanted(m))
        got = sorted(str(row_id) for row_id, _ in await lab.filtered_vector_search(conn, query, filters, top_k=150))
        assert got == expected, (
            f"filter {filters!r}: {len(got)} rows, expected {len(expected)} — JSON values keep their types "
            "(a number is not a string)"
        )


@pytest.mark.hint("Validate filters, weights and text before any SQL; raise ValueError with a message.")
@pytest.mark.parametrize(
    "kwargs",
    [
        {"query_text": "   "},
        {"vector_weight": -0.1},
        {"vector_weight": 0.0, "text_weight": 0.0},
        {"text_weight": math.nan},
        {"filters": "[1, 2]"},
        {"filters": {"a": {"b": 1}}},
        {"top_k": 0},
    ],
)
async def test_bad_hybrid_input_is_refused(lab, kwargs):
    """hybrid_search() refuses empty text, bad weights, bad filters and bad top_k"""
    args = {"query_text": "vacuum", "filters": None, **kwargs}
    with pytest.raises(ValueError):
        await lab.hybrid_search(None, [0.1] * 1536, args.pop("query_text"), args.pop("filters"), **args)


@pytest.fixture
async def forced_hnsw(conn):
    """2,000 documents with an HNSW index, and a session where the planner must use it (no sequential or bitmap
    scans): the situation of a large table, where the planner picks HNSW for a filtered query and the trap opens."""
    contents, metadata, vectors = corpus(2000)
    ids = await seed(conn, vectors, contents, metadata)
    await conn.execute("CREATE INDEX ON embeddings USING hnsw (embedding vector_cosine_ops)")
    await conn.execute("ANALYZE embeddings")
    await conn.execute("SET enable_seqscan = off")
    await conn.execute("SET enable_bitmapscan = off")
    return {"ids": ids, "metadata": metadata, "vectors": vectors}


def matching_exact(data, query, filters, top_k):
    rows = [i for i, m in enumerate(data["metadata"]) if all(m.get(k) == v for k, v in filters.items())]
    return [data["ids"][i] for i in sorted(rows, key=lambda i: -float(data["vectors"][i] @ query))[:top_k]], len(rows)


@pytest.mark.hint(
    "HNSW collects hnsw.ef_search candidates and filters them afterwards; turn on "
    "hnsw.iterative_scan for this query only (SET LOCAL inside a transaction)."
)
@pytest.mark.points(3)
async def test_iterative_scan_defeats_the_filtered_hnsw_trap(lab, conn, forced_hnsw):
    """on an HNSW plan a 1% filter still returns min(top_k, matches) exactly, and the setting stays in the query"""
    query = random_vectors(1, seed=41, normalised=True)[0]
    for filters in ({"topic": "rare"}, {"topic": "rare", "language": "de"}):
        expected, matching = matching_exact(forced_hnsw, query, filters, 10)
        results = await lab.filtered_vector_search(conn, query, filters, top_k=10)
        assert len(results) == min(10, matching), (
            f"{filters}: {len(results)} of {min(10, matching)} rows — the HNSW scan stopped before enough rows matched"
        )
        assert [r[0] for r in results] == expected, f"{filters}: not the nearest matching rows in order"
    assert await conn.fetchval("SHOW hnsw.iterative_scan") == "off", (
        "hnsw.iterative_scan leaked out of the query: use SET LOCAL inside a transaction"
    )
    trap = await lab.filtered_vector_search(conn, query, {"topic": "rare"}, top_k=10, iterative=False)
    assert len(trap) < 10, "iterative=False must show the trap (the plain HNSW scan), not turn iterative scans on"


@pytest.mark.hint(
    "Relaxed order returns rows roughly by distance; re-sort them outside the materialized CTE. "
    "Read pgvector's README on relaxed ordering: PostgreSQL 17+ drops a plain ORDER BY there."
)
@pytest.mark.points(2)
async def test_relaxed_order_results_come_back_sorted(lab, conn, forced_hnsw):
    """filtered_vector_search() over a relaxed-order HNSW scan returns its rows best first"""
    for seed_ in (42, 43, 44):
        query = random_vectors(1, seed=seed_, normalised=True)[0]
        results = await lab.filtered_vector_search(conn, query, {"topic": "sql"}, top_k=200)
        assert len(results) == 200
        sims = [r[1] for r in results]
        assert sims == sorted(sims, reverse=True), "results are not in order of similarity (best first)"


@pytest.mark.hint(
    "The candidates are the nearest rows by vector AND the best rows by text: a strong text match "
    "far from the query vector must still be scored."
)
async def test_text_matches_far_from_the_query_vector_are_candidates(lab, conn):
    """hybrid_search() scores documents found by text even when they are the farthest by vector"""
    contents, metadata, vectors = corpus(400)
    query = random_vectors(1, seed=46, normalised=True)[0]
    far = [int(i) for i in np.argsort(vectors @ query)[:3]]  # the three least similar documents
    for i in far:
        contents[i] += " The zeppelin is here."
    ids = await seed(conn, vectors, contents, metadata)
    results = await lab.hybrid_search(conn, query, "zeppelin", top_k=5, vector_weight=0.0, text_weight=1.0)
    assert {r.id for r in results[:3]} == {ids[i] for i in far}, (
        "the three documents that mention 'zeppelin' must come first when only text counts"
    )
    assert all(r.text_rank > 0 for r in results[:3])


@pytest.mark.hint(
    "RRF: score = Σ 1 / (k + rank) over the vector ranking and the text ranking (rank from 1), both within the filter."
)
@pytest.mark.points(2)
async def test_hybrid_search_rrf_fuses_vector_and_text_rankings(lab, conn, docs):
    """hybrid_search_rrf() adds 1/(k + rank) from each ranking, inside the filter"""
    query = random_vectors(1, seed=47, normalised=True)[0]
    target = 17  # "item 17" matches one document by text, and it is in the filter (language "de")
    de = [i for i, m in enumerate(docs["metadata"]) if m["language"] == "de"]
    vector_rank = {
        docs["ids"][i]: rank for rank, i in enumerate(sorted(de, key=lambda i: -float(docs["vectors"][i] @ query)), 1)
    }
    expected = {
        row_id: 1 / (60 + rank) + (1 / 61 if row_id == docs["ids"][target] else 0.0)
        for row_id, rank in vector_rank.items()
    }
    best = sorted(expected.items(), key=lambda pair: -pair[1])[:5]
    results = await lab.hybrid_search_rrf(conn, query, "item 17", {"language": "de"}, top_k=5)
    assert [row_id for row_id, _ in results] == [row_id for row_id, _ in best], "not the top 5 by fused score"
    assert [score for _, score in results] == pytest.approx([score for _, score in best], abs=1e-9)
    assert results[0][0] == docs["ids"][target], "the only text match gets 1/(k+1) from the text ranking"
    many = await lab.hybrid_search_rrf(conn, query, "vacuum", {"language": "de"}, top_k=30)
    outside = [row_id for row_id, _ in many if docs["metadata"][docs["by_id"][row_id]]["language"] != "de"]
    assert not outside, (
        f"{len(outside)} of the results are outside the filter {{'language': 'de'}}: 'vacuum' matches rows in both "
        "languages, and the text ranking must be filtered too"
    )
