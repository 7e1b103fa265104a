"""Checks for Objective 3 — distance operators, search_similar() with a threshold, compare_metrics()."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from checks.support import RecordingDB, explain, objective, plan_nodes, random_vectors, seed
from course import database

#: The objective's name in `make check` and grade reports (read from this line, not imported).
TITLE = "distance operators and search_similar()"
lab = objective(3)


def exact(matrix: np.ndarray, query: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Independent numpy computation: (order of row indexes nearest first, similarity per row)."""
    m, q = matrix.astype(np.float64), query.astype(np.float64)
    if metric == "cosine":
        sim = m @ q / np.linalg.norm(m, axis=1) / np.linalg.norm(q)
    elif metric == "inner_product":
        sim = m @ q
    else:
        sim = 1 / (1 + np.linalg.norm(m - q, axis=1))
    return np.argsort(-sim, kind="stable"), sim


#: Each metric's pgvector operator, to name it in a failure.
OPERATOR_OF = {"cosine": "<=>", "l2": "<->", "inner_product": "<#>"}


class Forbidden:
    """Stands in for the database: any use means SQL would have run before validation."""

    def __getattr__(self, name):
        raise AssertionError(f"db.{name} was used: validate the arguments before running any SQL")


@pytest.fixture
async def pool(db_url):
    """A pool (pgvector codec on every connection) on the check's own database with 300 known rows."""
    conn = await database.connect(db_url)
    matrix = random_vectors(300, seed=3)
    ids = await seed(conn, matrix)
    await conn.close()
    p = await database.create_pool(db_url, max_size=2)
    yield SimpleNamespace(pool=p, matrix=matrix, ids=ids)
    await p.close()


@pytest.mark.hint(
    "Order by the metric's own operator ascending (`ORDER BY embedding <op> $1 LIMIT $2`: <=> cosine, <-> l2, "
    "<#> inner product), not by a computed similarity, so the index of that operator class can serve the query."
)
@pytest.mark.parametrize(
    "metric, opclass", [("cosine", "vector_cosine_ops"), ("l2", "vector_l2_ops"), ("inner_product", "vector_ip_ops")]
)
async def test_top_k_query_can_use_the_hnsw_index(lab, conn, metric, opclass):
    """top_k_sql() and search_sql() are served by an HNSW index of the matching operator class"""
    await seed(conn, random_vectors(200, seed=1))
    await conn.execute(f"CREATE INDEX check_hnsw ON embeddings USING hnsw (embedding {opclass})")
    query = random_vectors(1, seed=99)[0]
    for sql, args in ((lab.top_k_sql(metric), (query, 5)), (lab.search_sql(metric), (query, 5, 0.1))):
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")  # only a query the index *can* serve avoids Seq Scan
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))
        assert "Index Scan using check_hnsw" in plan, (
            f"the {metric} query does not use the HNSW index built with {opclass} (its operator is "
            f"{OPERATOR_OF[metric]}):\n{sql.strip()}\nplan:\n{plan}"
        )


@pytest.mark.hint("cosine: 1 - distance; inner product: -(<#>); l2: 1 / (1 + distance). Order nearest first.")
@pytest.mark.points(3)
@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
async def test_ranking_and_similarity_match_numpy(lab, pool, metric):
    """search_similar() ranks and scores exactly like an independent numpy computation"""
    query = random_vectors(1, seed=7)[0]
    results = await lab.search_similar(pool.pool, query, top_k=10, metric=metric)
    order, sim = exact(pool.matrix, query, metric)
    assert len(results) == 10, f"expected 10 results, got {len(results)}"
    assert [r.id for r in results] == [pool.ids[i] for i in order[:10]], (
        f"the {metric} ranking differs from numpy's: does the {metric} query order by its own operator "
        f"({OPERATOR_OF[metric]}), ascending?"
    )
    for r, i in zip(results, order[:10]):
        flipped = r.similarity == pytest.approx(-sim[i], rel=1e-4, abs=1e-4) and abs(sim[i]) > 1e-3
        assert r.similarity == pytest.approx(sim[i], rel=1e-4, abs=1e-4), (
            f"{metric} similarity is {r.similarity:.6g}, numpy's is {sim[i]:.6g}"
            + (": the sign is flipped (pgvector's <#> is the *negative* inner product)" if flipped else "")
        )
        assert lab.similarity_from_distance(r.distance, metric) == pytest.approx(r.similarity)
        assert isinstance(r.content, str) and isinstance(r.metadata, dict)


@pytest.mark.hint("Apply the threshold outside an ordered, limited subquery: WHERE <similarity> >= $3.")
@pytest.mark.points(2)
async def test_threshold_excludes_exactly_the_weaker_results(lab, pool):
    """min_similarity keeps exactly the results at or above the threshold"""
    query = random_vectors(1, seed=8)[0]
    order, sim = exact(pool.matrix, query, "cosine")
    threshold = float((sim[order[4]] + sim[order[5]]) / 2)  # between the 5th and 6th best
    results = await lab.search_similar(pool.pool, query, top_k=10, min_similarity=threshold)
    assert [r.id for r in results] == [pool.ids[i] for i in order[:5]], "expected exactly the 5 results above it"
    assert all(r.similarity >= threshold for r in results)
    assert await lab.search_similar(pool.pool, query, top_k=10, min_similarity=1.0) == [], "nothing is that similar"
    assert len(await lab.search_similar(pool.pool, query, top_k=10, min_similarity=-1.0)) == 10


@pytest.mark.hint("0 is a threshold, not 'no threshold': test `min_similarity is None`, never its truth value.")
async def test_a_threshold_of_zero_is_a_threshold(lab, pool):
    """min_similarity=0 keeps exactly the rows with a similarity of 0 or more"""
    query = -pool.matrix[0]  # the opposite direction of a row: similarities of both signs
    order, sim = exact(pool.matrix, query, "cosine")
    expected = [pool.ids[i] for i in order if sim[i] >= 0]
    assert 0 < len(expected) < 300, "the check's own data must have similarities of both signs"
    results = await lab.search_similar(pool.pool, query, top_k=300, min_similarity=0.0)
    assert [r.id for r in results] == expected, (
        f"min_similarity=0.0 returned {len(results)} rows; {len(expected)} have a similarity >= 0 "
        f"({sum(r.similarity < 0 for r in results)} negative ones got through: was 0 treated as no threshold?)"
    )


@pytest.mark.hint("Return however many rows exist when there are fewer than top_k; keep tied rows in the result.")
async def test_fewer_rows_than_k_and_ties(lab, conn):
    """fewer rows than top_k returns them all; identical vectors tie with equal similarity"""
    base = random_vectors(3, seed=5, normalised=True)
    ids = await seed(conn, np.vstack([base, base[:1]]))  # row 3 duplicates row 0
    results = await lab.search_similar(conn, base[0], top_k=10)
    assert len(results) == 4, f"4 rows exist, got {len(results)}"
    assert {r.id for r in results[:2]} == {ids[0], ids[3]}, "the two identical vectors are the two nearest"
    assert results[0].similarity == pytest.approx(results[1].similarity) == pytest.approx(1.0, abs=1e-5)
    top1 = await lab.search_similar(conn, base[0], top_k=1)
    assert len(top1) == 1 and top1[0].id in {ids[0], ids[3]}


@pytest.mark.hint("Validate everything first and raise ValueError with a message; the db must not be touched.")
@pytest.mark.points(2)
@pytest.mark.parametrize(
    "vector, kwargs, why",
    [
        ([0.1] * 1535, {}, "wrong dimensions"),
        ([], {}, "empty vector"),
        ([math.nan] + [0.1] * 1535, {}, "NaN"),
        ([0.1] * 1535 + [math.inf], {}, "infinity"),
        ([0.1] * 1536, {"metric": "manhattan"}, "unknown metric"),
        ([0.1] * 1536, {"top_k": 0}, "top_k 0"),
        ([0.1] * 1536, {"top_k": -3}, "negative top_k"),
        ([0.1] * 1536, {"top_k": 1_000_000}, "absurd top_k"),
        ([0.1] * 1536, {"top_k": 2.5}, "fractional top_k"),
        ([0.1] * 1536, {"min_similarity": 1.5}, "cosine threshold above 1"),
        ([0.1] * 1536, {"min_similarity": -1.01}, "cosine threshold below -1"),
        ([0.1] * 1536, {"metric": "l2", "min_similarity": -0.1}, "negative l2 similarity"),
        ([0.1] * 1536, {"min_similarity": math.nan}, "NaN threshold"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_bad_input_is_refused_before_any_sql(lab, vector, kwargs, why):
    """search_similar() refuses bad arguments with ValueError before running SQL"""
    with pytest.raises(ValueError) as info:
        await lab.search_similar(Forbidden(), vector, **kwargs)
    assert str(info.value), f"the error for {why} needs a message"


@pytest.mark.hint("Pass the vector and the threshold as query parameters ($1, $3), never by formatting SQL text.")
async def test_sql_in_content_and_metadata_is_just_data(lab, conn):
    """content and metadata containing SQL are returned verbatim and harm nothing"""
    hostile = "'); DROP TABLE embeddings; --"
    vectors = random_vectors(2, seed=11, normalised=True)
    await seed(conn, vectors, [hostile, "plain"], [{"q": "x' OR '1'='1"}, {}])
    results = await lab.search_similar(conn, vectors[0], top_k=2)
    assert results[0].content == hostile and results[0].metadata == {"q": "x' OR '1'='1"}
    assert await conn.fetchval("SELECT count(*) FROM embeddings") == 2


@pytest.mark.hint("Call search_similar() for each metric; overlap = shared ids / length of the shorter ranking.")
@pytest.mark.points(2)
async def test_compare_metrics_agrees_on_unit_vectors_and_not_otherwise(lab, conn, db_url):
    """compare_metrics(): identical rankings on normalised vectors, the true per-metric rankings otherwise"""
    unit = random_vectors(150, seed=21, normalised=True)
    ids = await seed(conn, unit)
    query = random_vectors(1, seed=22, normalised=True)[0]
    same = await lab.compare_metrics(conn, query, top_k=10)
    assert set(same["rankings"]) == {"cosine", "l2", "inner_product"}
    assert all(v == pytest.approx(1.0) for v in same["overlap"].values()), "on unit vectors the metrics agree"
    assert same["rankings"]["cosine"] == [ids[i] for i in exact(unit, query, "cosine")[0][:10]]

    await conn.execute("TRUNCATE embeddings")
    raw = random_vectors(150, seed=21)
    ids = await seed(conn, raw)
    query = random_vectors(1, seed=23)[0]
    result = await lab.compare_metrics(conn, query, top_k=10)
    for metric in ("cosine", "l2", "inner_product"):
        assert result["rankings"][metric] == [ids[i] for i in exact(raw, query, metric)[0][:10]], (
            f"compare_metrics(): the {metric} ranking is not the exact {metric} ranking on vectors of different "
            f"lengths — each metric needs its own operator ({OPERATOR_OF[metric]} for {metric})"
        )
    expected = len(set(result["rankings"]["cosine"]) & set(result["rankings"]["inner_product"])) / 10
    assert result["overlap"]["cosine/inner_product"] == pytest.approx(expected)
    assert min(result["overlap"].values()) < 1.0, "on vectors of different lengths the metrics disagree"


@pytest.mark.hint(
    "The index can only serve `ORDER BY embedding <op> $1 LIMIT k`: keep that query intact and compute "
    "or filter the similarity around it (a subquery), never in its ORDER BY."
)
@pytest.mark.points(3)
@pytest.mark.parametrize(
    "metric, opclass, minimum",
    [("cosine", "vector_cosine_ops", 0.1), ("cosine", "vector_cosine_ops", None), ("l2", "vector_l2_ops", 0.001)],
    ids=["cosine with threshold", "cosine", "l2 with threshold"],
)
async def test_search_similar_is_served_by_the_index(lab, conn, metric, opclass, minimum):
    """search_similar() runs SQL that the planner answers from the HNSW index (with and without a threshold)"""
    await seed(conn, random_vectors(2000, seed=1))
    await conn.execute(f"CREATE INDEX check_hnsw ON embeddings USING hnsw (embedding {opclass})")
    await conn.execute("ANALYZE embeddings")
    recorder = RecordingDB(conn)
    query = random_vectors(1, seed=99)[0]
    results = await lab.search_similar(recorder, query, top_k=10, metric=metric, min_similarity=minimum)
    assert results, "the search returned nothing"
    searches = [(sql, args) for sql, args in recorder.statements if "embeddings" in sql]
    assert searches, "search_similar() must run its query on the pool/connection it is given (db.fetch)"
    for sql, args in searches:
        plan = await explain(conn, sql, args)
        used = [node.get("Index Name") for node in plan_nodes(plan) if node.get("Index Name")]
        assert "check_hnsw" in used, (
            f"the planner answers this {metric} search with a full scan, not the index "
            f"(nodes: {[n['Node Type'] for n in plan_nodes(plan)]}):\n{sql}"
        )


@pytest.mark.hint(
    "Similarities fall from the best result to the worst (inner product: -(<#>)); a row whose similarity equals "
    "min_similarity is kept, at or above the minimum."
)
@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
async def test_a_row_exactly_at_the_minimum_is_kept(lab, pool, metric):
    """min_similarity equal to a row's similarity keeps that row"""
    query = random_vectors(1, seed=8)[0]
    ranked = await lab.search_similar(pool.pool, query, top_k=10, metric=metric)
    sims = [r.similarity for r in ranked]
    assert sims == sorted(sims, reverse=True), (
        f"{metric}: the similarities of the ranked results should fall from the best to the worst, got "
        f"{[round(x, 4) for x in sims]}"
        + (": pgvector's <#> is the negative inner product" if metric == "inner_product" else "")
    )
    boundary = ranked[4].similarity
    kept = await lab.search_similar(pool.pool, query, top_k=10, metric=metric, min_similarity=boundary)
    assert [r.id for r in kept] == [r.id for r in ranked[:5]], (
        f"with min_similarity equal to the 5th result's similarity, expected 5 results, got {len(kept)}"
    )


@pytest.mark.hint(
    "Validation refuses what is outside the documented ranges and accepts everything inside, "
    "the limits included (top_k = MAX_TOP_K, min_similarity at either end of the metric's range)."
)
async def test_documented_edge_values_are_accepted(lab, pool):
    """top_k = MAX_TOP_K and min_similarity at the ends of each metric's range are accepted"""
    query = random_vectors(1, seed=9)[0]
    assert len(await lab.search_similar(pool.pool, query, top_k=lab.MAX_TOP_K)) == 300, "top_k = MAX_TOP_K is allowed"
    assert len(await lab.search_similar(pool.pool, query, top_k=5, metric="l2", min_similarity=0.0)) == 5
    assert await lab.search_similar(pool.pool, query, top_k=5, metric="l2", min_similarity=1.0) == []
    assert len(await lab.search_similar(pool.pool, query, top_k=5, min_similarity=-1.0)) == 5
    assert len(await lab.search_similar(pool.pool, query, top_k=5, metric="inner_product", min_similarity=-1e9)) == 5
