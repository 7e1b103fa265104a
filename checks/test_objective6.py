"""Checks for Objective 6 — the search service: ranking, parameters, caching, metrics and errors."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from checks.support import RecordingEmbedder, RecordingPool, explain, objective, plan_nodes, random_vectors, seed
from course import database
from course.embeddings import OpenAIEmbedder
from course.fake_providers import FakeProviderServer, Step
from course.settings import Settings

#: The objective's name in `make check` and grade reports (read from this line, not imported).
TITLE = "the semantic search service"
lab = objective(6)

TOPICS = ["vacuum", "index", "backup", "replication", "trigger", "json"]
CONTENTS = [
    f"{a} and {b} notes: how {a} works with {b} in practice, part {i}"
    for i, (a, b) in enumerate((a, b) for a in TOPICS for b in TOPICS)
] + [f"a {b} guide mentioning {a} once, chapter {i}" for i, (a, b) in enumerate((a, b) for a in TOPICS for b in TOPICS)]


@pytest.fixture
async def data(conn):
    embedder = RecordingEmbedder()
    vectors = np.asarray(embedder.embed_sync(CONTENTS), dtype=np.float32)
    metadata = [{"topic": CONTENTS[i].split()[0], "n": i} for i in range(len(CONTENTS))]
    ids = await seed(conn, vectors, CONTENTS, metadata)
    return {"ids": ids, "vectors": vectors, "metadata": metadata, "embedder": embedder}


def settings(**overrides) -> Settings:
    return Settings(_env_file=None, **overrides)


@pytest.fixture
async def client(lab, data, db_url):
    app = lab.create_app(embedder=data["embedder"], database_url=db_url, settings=settings())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            yield c


async def search(client, query: str, **params) -> httpx.Response:
    return await client.post("/search", json={"query": query}, params=params)


def metric(text: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.mark.hint(
    "The filter must be a JSON object of scalar values (string, finite number, boolean); anything else "
    "is a ValueError. Note that 1e400 parses as infinity."
)
@pytest.mark.parametrize(
    "bad", ["{oops", "[1, 2]", '"text"', '{"a": {"b": 1}}', '{"a": [1]}', '{"a": null}', '{"a": 1e400}']
)
def test_parse_filter(lab, bad):
    """parse_filter() accepts JSON objects of scalars and refuses everything else"""
    assert lab.parse_filter('{"topic": "sql", "n": 2, "ok": true}') == {"topic": "sql", "n": 2, "ok": True}
    assert lab.parse_filter(None) is None and lab.parse_filter("") is None
    with pytest.raises(ValueError):
        lab.parse_filter(bad)


@pytest.mark.hint(
    "Hash the float32 bytes of the embedding together with top_k, min_score, the mode, the text "
    "and json.dumps(filter, sort_keys=True)."
)
def test_result_cache_key(lab):
    """result_cache_key() is stable, ignores filter key order, and changes with every input"""
    e = np.random.default_rng(0).normal(size=1536).astype(np.float32)
    key = lab.result_cache_key(e, 10, 0.3, {"a": 1, "b": "x"})
    assert key == lab.result_cache_key(e.copy(), 10, 0.3, {"b": "x", "a": 1})
    other = e.copy()
    other[5] += 1e-3
    variants = [
        lab.result_cache_key(other, 10, 0.3, {"a": 1, "b": "x"}),
        lab.result_cache_key(e, 11, 0.3, {"a": 1, "b": "x"}),
        lab.result_cache_key(e, 10, 0.31, {"a": 1, "b": "x"}),
        lab.result_cache_key(e, 10, 0.3, {"a": 2, "b": "x"}),
        lab.result_cache_key(e, 10, 0.3, None),
        lab.result_cache_key(e, 10, 0.3, {"a": 1, "b": "x"}, "rrf"),
        lab.result_cache_key(e, 10, 0.3, {"a": 1, "b": "x"}, "vector", "other words"),
    ]
    assert len({key, *variants}) == 8, (
        "every change of input (embedding, top_k, min_score, filter, mode, text) must change the key"
    )


@pytest.mark.hint("Look the model up in CALIBRATED_MIN_SCORE; unknown models get FALLBACK_MIN_SCORE.")
def test_default_min_score_is_calibrated_per_model(lab):
    """default_min_score() uses the per-model calibration"""
    assert lab.default_min_score("wordllama/l2_supercat_256") == lab.CALIBRATED_MIN_SCORE["wordllama/l2_supercat_256"]
    assert (
        lab.default_min_score("openai/text-embedding-ada-002")
        == lab.CALIBRATED_MIN_SCORE["openai/text-embedding-ada-002"]
    )
    assert lab.default_min_score("some/unknown-model") == lab.service.FALLBACK_MIN_SCORE


@pytest.mark.hint(
    "search(): embed the query, run self.query(...), and return the SearchResponse with count and results."
)
@pytest.mark.points(3)
async def test_ranking_scores_and_parameters_match_an_independent_computation(lab, client, data):
    """POST /search ranks by cosine similarity like numpy and honours top_k, min_score and filter"""
    query = "how vacuum works with backup"
    q = np.asarray(data["embedder"].embed_sync([query])[0], dtype=np.float64)
    sims = data["vectors"].astype(np.float64) @ q
    for params in (
        {"top_k": 5, "min_score": 0.0},
        {"top_k": 50, "min_score": 0.4},
        {"top_k": 7, "min_score": 0.0, "filter": json.dumps({"topic": "backup"})},
    ):
        response = await search(client, query, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        allowed = [
            i
            for i in np.argsort(-sims, kind="stable")
            if sims[i] >= params["min_score"] and ("filter" not in params or data["metadata"][i]["topic"] == "backup")
        ][: params["top_k"]]
        assert body["count"] == len(body["results"]) == len(allowed), (
            f"{params}: {body['count']} results, expected {len(allowed)}"
        )
        assert sorted(h["id"] for h in body["results"]) == sorted(str(data["ids"][i]) for i in allowed)
        assert [h["score"] for h in body["results"]] == pytest.approx(
            sorted((sims[i] for i in allowed), reverse=True), abs=1e-5
        )
    default = (await search(client, query)).json()
    assert default["min_score"] == lab.default_min_score(data["embedder"].model_id), (
        "min_score defaults to the calibrated value"
    )


@pytest.mark.hint(
    "search(): pass mode and text to result_cache_key() and self.query(), set `mode` in the response, and "
    'embed the query with kind="query".'
)
@pytest.mark.points(2)
async def test_modes_reach_the_query_and_the_cache(lab, client, data):
    """each mode ranks its own way and is cached apart; queries are embedded as queries"""
    query = "vacuum backup"
    bodies = {}
    for mode in ("vector", "rrf", "hybrid"):
        response = await search(client, query, top_k=8, min_score=0.0, mode=mode)
        assert response.status_code == 200, response.text
        bodies[mode] = body = response.json()
        assert body["mode"] == mode and body["cached"] is False, f"mode={mode}: a new mode is a new search"
    vector, rrf, hybrid = (bodies[m]["results"] for m in ("vector", "rrf", "hybrid"))
    assert all(h["score"] == pytest.approx(h["similarity"]) for h in vector), "vector mode scores by similarity"
    assert all(0 < h["score"] <= 2 / 61 for h in rrf), "rrf mode scores by reciprocal rank fusion (at most 2/61)"
    assert all(0 <= h["score"] <= 1 for h in hybrid) and hybrid[0]["score"] > rrf[0]["score"], "hybrid mode scores 0..1"
    # the same embedding from other words: the hashing model splits on the hyphen, full-text search does not
    same_vector = await search(client, "vacuum-backup", top_k=8, min_score=0.0, mode="rrf")
    assert same_vector.json()["cached"] is False, "hybrid and rrf match the query's words: the text belongs in the key"
    again = await search(client, query, top_k=8, min_score=0.0, mode="rrf")
    assert again.json()["cached"] is True and again.json()["results"] == rrf
    assert set(data["embedder"].kinds) == {"query"}, 'a search embeds its text as a query (kind="query")'


@pytest.mark.hint(
    "Keep a TTLCache of results keyed by result_cache_key() and one of embeddings keyed by the query text."
)
@pytest.mark.points(3)
async def test_repeat_is_a_cache_hit_without_a_second_embedding(lab, client, data):
    """a repeated search is served from the cache: identical results, cached=true, no second embedding call"""
    first = await search(client, "replication and trigger", top_k=5, min_score=0.1)
    calls = len(data["embedder"].calls)
    second = await search(client, "replication and trigger", top_k=5, min_score=0.1)
    assert first.status_code == second.status_code == 200
    assert first.json()["cached"] is False and second.json()["cached"] is True
    assert second.json()["results"] == first.json()["results"]
    assert len(data["embedder"].calls) == calls, "the embedding API must not be called again for the same query"
    third = await search(client, "replication and trigger", top_k=6, min_score=0.1)
    assert third.json()["cached"] is False, "another top_k is another result"
    assert len(data["embedder"].calls) == calls, "…but the query's embedding is reused"


@pytest.mark.hint("Clear the result cache when a document is added (POST /documents).")
async def test_cache_is_invalidated_by_an_insert(lab, client):
    """adding a document invalidates cached results, and the new document can be found"""
    query = "json index backup unique marker"
    before = await search(client, query, top_k=3, min_score=0.0)
    assert (await search(client, query, top_k=3, min_score=0.0)).json()["cached"] is True
    created = await client.post("/documents", json={"content": query, "metadata": {"topic": "new"}})
    assert created.status_code == 201
    after = (await search(client, query, top_k=3, min_score=0.0)).json()
    assert after["cached"] is False, "a cached result must not survive an insert"
    assert after["results"][0]["id"] == created.json()["id"] and after["results"][0]["score"] == pytest.approx(
        1.0, abs=1e-5
    )
    assert after["results"] != before.json()["results"]


@pytest.mark.hint("Count cache hits/misses, observe search latency and result counts, and time the embedding call.")
@pytest.mark.points(2)
async def test_metrics_move_and_parse(lab, client):
    """/metrics parses with Prometheus' parser and its counters and histograms move as expected"""
    await search(client, "vacuum index", top_k=3, min_score=0.0)
    await search(client, "vacuum index", top_k=3, min_score=0.0)
    await search(client, "vacuum index", top_k=3, min_score=0.0, filter="{broken")
    text = (await client.get("/metrics")).text
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "search_request_seconds",
        "search_results",
        "embedding_request_seconds",
        "search_cache_requests",
        "search_errors",
    } <= families, f"missing metric families: {families}"
    assert metric(text, "search_cache_requests_total", cache="result", outcome="miss") == 1
    assert metric(text, "search_cache_requests_total", cache="result", outcome="hit") == 1
    assert metric(text, "search_cache_requests_total", cache="embedding", outcome="hit") == 1
    assert metric(text, "search_request_seconds_count", cache="miss") == 1
    assert metric(text, "search_request_seconds_count", cache="hit") == 1
    assert metric(text, "search_results_count") == 2 and metric(text, "search_results_sum") == 6
    assert metric(text, "embedding_request_seconds_count") == 1
    assert metric(text, "search_errors_total", kind="validation") == 1


@pytest.mark.hint("Let EmbeddingUnavailable propagate from search(): the app turns it into 503 with Retry-After.")
@pytest.mark.points(2)
@pytest.mark.parametrize("failure", ["outage", "rate_limit", "timeout"])
async def test_provider_failures_are_503_with_retry_after(lab, data, db_url, failure):
    """a provider that is down, rate-limiting or timing out gives 503 + Retry-After after bounded retries"""
    with FakeProviderServer() as provider:
        embedder = OpenAIEmbedder(
            base_url=provider.openai_base_url,
            model="text-embedding-ada-002",
            api_key="sk-test",
            max_retries=1,
            timeout=0.3,
            backoff_initial=0.01,
        )
        app = lab.create_app(embedder=embedder, database_url=db_url, settings=settings())
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                ok = await search(client, "vacuum", min_score=0.0)
                assert ok.status_code == 200, f"a healthy provider must work first: {ok.text}"
                step = {
                    "outage": Step(503, retry_after="1"),
                    "rate_limit": Step(429, retry_after="1"),
                    "timeout": Step(delay=1.0),
                }[failure]
                provider.script(step, step)
                response = await search(client, "backup")
                assert response.status_code == 503, response.text
                assert "Retry-After" in response.headers and int(response.headers["Retry-After"]) >= 1
                assert "embedding provider" in response.json()["detail"]
                assert len(provider.requests) == 3, "1 good call, then 1 attempt + 1 retry"
                text = (await client.get("/metrics")).text
                assert metric(text, "search_errors_total", kind="embedding_unavailable") == 1
        await embedder.aclose()


@pytest.mark.hint("Validate parameters (FastAPI Query bounds, parse_filter) so bad input is a 422 with a message.")
@pytest.mark.points(2)
@pytest.mark.parametrize(
    "params, body",
    [
        ({"filter": "{not json"}, {"query": "vacuum"}),
        ({"filter": "[1,2]"}, {"query": "vacuum"}),
        ({"top_k": 0}, {"query": "vacuum"}),
        ({"top_k": 101}, {"query": "vacuum"}),
        ({"min_score": 1.5}, {"query": "vacuum"}),
        ({}, {"query": ""}),
        ({}, {"query": "   "}),
        ({}, {"query": "x" * 2001}),
        ({}, {"nothing": "here"}),
    ],
)
async def test_bad_input_is_422_with_a_message(lab, client, params, body):
    """bad parameters, malformed filter JSON and bad queries get 422 with a readable message"""
    assert (await search(client, "vacuum", min_score=0.0)).status_code == 200, "a good search must work first"
    response = await client.post("/search", json=body, params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 5, f"the message should explain the problem: {detail!r}"


@pytest.mark.hint(
    "Database errors surface as DatabaseUnavailable from query(); the app maps them to 503. Metrics record every "
    "request, the failed ones too."
)
async def test_dead_database_is_503_and_unhealthy(lab, data, db_url):
    """when the database disappears, /search answers 503 (not a 500 traceback) and /healthz reports it"""
    url = database.create_database("check_dead")
    conn = await database.connect(url)
    await seed(conn, data["vectors"][:10], CONTENTS[:10])
    await conn.close()
    app = lab.create_app(embedder=RecordingEmbedder(), database_url=url, settings=settings())
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                assert (await search(client, "vacuum", min_score=0.0)).status_code == 200
                health = await client.get("/healthz")
                assert health.status_code == 200 and health.json()["database"]["ready"] is True
                database.drop_database(url)
                response = await search(client, "backup things")
                assert response.status_code == 503 and "Retry-After" in response.headers, response.text
                assert "database" in response.json()["detail"].lower()
                assert (await client.get("/healthz")).status_code == 503
                text = (await client.get("/metrics")).text
                misses = metric(text, "search_cache_requests_total", cache="result", outcome="miss")
                assert misses == 2, (
                    f"{misses:g} result-cache misses recorded for 2 uncached searches, one of which failed: count "
                    "each lookup when it happens, not only when the search succeeds"
                )
    finally:
        database.drop_database(url)


@pytest.fixture
async def app_and_client(lab, data, db_url):
    app = lab.create_app(embedder=data["embedder"], database_url=db_url, settings=settings())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            yield app, c


@pytest.mark.hint("An embedding belongs to one model and one exact text: key the embedding cache by both.")
@pytest.mark.points(2)
async def test_embedding_cache_is_keyed_by_model_and_exact_text(lab, app_and_client, data):
    """another text (even by case) or another model is embedded again, never served another's vector"""
    app, client = app_and_client
    await search(client, "vacuum and backup", min_score=0.0)
    calls = len(data["embedder"].calls)
    await search(client, "Vacuum and backup", min_score=0.0)
    assert len(data["embedder"].calls) == calls + 1, "a different text (here: its case) needs its own embedding"
    other = RecordingEmbedder()
    other.model_id = "check/another-model"
    app.state.service.embedder = other
    response = await search(client, "vacuum and backup", min_score=0.0)
    assert response.status_code == 200, response.text
    assert len(other.calls) == 1, (
        "a vector cached for another model was reused: vectors of two models are not comparable"
    )


@pytest.mark.hint("A cache size of 0 means no caching: nothing is stored, every search is answered afresh.")
async def test_cache_size_zero_turns_caching_off(lab, data, db_url):
    """with SEARCH_CACHE_SIZE=0 and EMBEDDING_CACHE_SIZE=0 nothing is served from a cache"""
    app = lab.create_app(
        embedder=data["embedder"], database_url=db_url, settings=settings(search_cache_size=0, embedding_cache_size=0)
    )
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            first = await search(client, "index trigger", top_k=3, min_score=0.0)
            calls = len(data["embedder"].calls)
            second = await search(client, "index trigger", top_k=3, min_score=0.0)
    assert first.json()["cached"] is False and second.json()["cached"] is False, "caching is off at size 0"
    assert len(data["embedder"].calls) == calls + 1, "with the embedding cache off, the query is embedded again"


@pytest.mark.hint("Two searches that differ in anything the results depend on (the filter too) are two cache entries.")
async def test_searches_differing_only_in_filter_are_not_confused(lab, client):
    """the same query with another filter is not answered from the first one's cache entry"""
    params = {"top_k": 5, "min_score": -1.0}
    a = (await search(client, "backup notes", **params, filter='{"topic": "backup"}')).json()
    b = (await search(client, "backup notes", **params, filter='{"topic": "json"}')).json()
    assert b["cached"] is False, "another filter is another search"
    assert {h["metadata"]["topic"] for h in a["results"]} == {"backup"}
    assert {h["metadata"]["topic"] for h in b["results"]} == {"json"}


@pytest.mark.hint("search_results observes how many results each search returned (not top_k).")
async def test_results_histogram_observes_the_result_count(lab, client):
    """the search_results histogram records the number of results actually returned"""
    counts = []
    for min_score in (0.0, 0.6, 0.99):
        counts.append((await search(client, "vacuum and index notes", top_k=10, min_score=min_score)).json()["count"])
    assert counts[0] == 10 and counts[-1] < 10, f"precondition: the thresholds should cut the results ({counts})"
    text = (await client.get("/metrics")).text
    assert metric(text, "search_results_count") == 3
    assert metric(text, "search_results_sum") == sum(counts), (
        f"search_results_sum is {metric(text, 'search_results_sum')}, the searches returned {counts}"
    )


@pytest.mark.hint(
    "Relaxed-order HNSW results must be re-sorted outside the CTE; PostgreSQL 17+ drops a plain "
    "ORDER BY distance there (pgvector's README: ORDER BY distance + 0)."
)
async def test_filtered_results_are_sorted_on_an_hnsw_plan(lab, conn, db_url):
    """with the planner on the HNSW index and relaxed ordering, /search still returns results best first"""
    vectors = random_vectors(2000, seed=63, normalised=True)
    await seed(
        conn,
        vectors,
        [f"row {i}" for i in range(2000)],
        [{"topic": ["sql", "other", "more"][i % 3]} for i in range(2000)],
    )
    await conn.execute("CREATE INDEX ON embeddings USING hnsw (embedding vector_cosine_ops)")
    await conn.execute("ANALYZE embeddings")
    name = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'ALTER DATABASE "{name}" SET enable_seqscan = off')
    await conn.execute(f'ALTER DATABASE "{name}" SET enable_bitmapscan = off')
    app = lab.create_app(embedder=RecordingEmbedder(), database_url=db_url, settings=settings())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            for query in ("vacuum", "backup and restore", "json index"):
                body = (await search(client, query, top_k=100, min_score=-1.0, filter='{"topic": "sql"}')).json()
                scores = [h["score"] for h in body["results"]]
                assert len(scores) == 100 and scores == sorted(scores, reverse=True), f"{query!r}: results out of order"


@pytest.mark.hint(
    "An index can only serve a top-k ordered by the raw cosine operator, ascending, with a LIMIT (Objective 3): "
    "keep that query intact in a materialized CTE and apply the minimum similarity outside it, never in its WHERE "
    "or ORDER BY.",
)
@pytest.mark.points(2)
async def test_vector_search_is_served_by_the_hnsw_index(lab, conn, db_url):
    """mode=vector runs SQL the planner answers from the HNSW index, with and without a threshold"""
    vectors = random_vectors(2000, seed=64, normalised=True)
    await seed(conn, vectors, [f"row {i}" for i in range(2000)], [{"n": i} for i in range(2000)])
    await conn.execute("CREATE INDEX check_hnsw ON embeddings USING hnsw (embedding vector_cosine_ops)")
    await conn.execute("ANALYZE embeddings")
    app = lab.create_app(embedder=RecordingEmbedder(), database_url=db_url, settings=settings())
    async with app.router.lifespan_context(app):
        service = app.state.service
        service.pool = RecordingPool(service.pool)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            for min_score in (0.1, -1.0):
                response = await search(client, "vacuum", mode="vector", top_k=10, min_score=min_score)
                assert response.status_code == 200, response.text
    searches = [(sql, args) for sql, args in service.pool.statements if "<=>" in sql]
    assert searches, "mode=vector ran no query with the cosine operator <=> on the service's pool"
    for sql, args in searches:
        plan = await explain(conn, sql, args)
        used = [node.get("Index Name") for node in plan_nodes(plan) if node.get("Index Name")]
        assert "check_hnsw" in used, (
            "the planner answers this search with a full scan, not the HNSW index "
            f"(nodes: {[n['Node Type'] for n in plan_nodes(plan)]}):\n{sql.strip()}"
        )


@pytest.mark.hint(
    "Ask FastAPI for the service (a parameter annotated ServiceDep = Annotated[SearchService, "
    "Depends(search_service)]), never request.app.state: then a test can swap it with app.dependency_overrides.",
)
@pytest.mark.points(2)
async def test_the_route_gets_its_service_by_dependency_injection(lab, data, db_url):
    """POST /search takes its service from Depends(search_service), so app.dependency_overrides can replace it"""
    import contextlib

    from course.web.base import search_service

    class StubService:
        """What the route needs of a service: settings, embedder, deadline(), model_problem(), search()."""

        def __init__(self):
            self.settings, self.embedder, self.calls = settings(), data["embedder"], []

        @contextlib.asynccontextmanager
        async def deadline(self, seconds):
            yield

        async def model_problem(self):
            return None

        async def search(self, text, top_k, min_score, filters, mode="vector"):
            self.calls.append((text, top_k, min_score, filters, mode))
            return lab.SearchResponse(
                query=text,
                model="stub",
                mode=mode,
                top_k=top_k,
                min_score=min_score or 0.0,
                filter=filters,
                count=0,
                cached=False,
                results=[],
            )

    stub = StubService()
    app = lab.create_app(embedder=data["embedder"], database_url=db_url, settings=settings())
    app.dependency_overrides[search_service] = lambda: stub
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            response = await search(
                client, "  how do I vacuum?  ", top_k=7, min_score=0.2, filter='{"topic": "sql"}', mode="hybrid"
            )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "stub", "the route did not use the service FastAPI injected"
    assert stub.calls == [("how do I vacuum?", 7, 0.2, {"topic": "sql"}, "hybrid")], (
        f"the route passed {stub.calls}: the stripped query, top_k, min_score, the parsed filter and the mode"
    )


class SlowEmbedder(RecordingEmbedder):
    """A provider that does not answer for 5 s."""

    async def embed(self, texts, kind="document"):
        import asyncio

        await asyncio.sleep(5)
        return await super().embed(texts, kind)


@pytest.mark.hint(
    "The whole search runs inside the service's deadline() for SEARCH_DEADLINE: past it the request is cut and "
    "answered 503 with Retry-After, not left hanging; a table of another model's vectors is refused (ModelMismatch), "
    "and without a `mode` the default is default_mode(model, SEARCH_MODE)."
)
@pytest.mark.points(2)
async def test_the_route_keeps_its_deadline_checks_the_model_and_defaults_the_mode(lab, data, db_url, conn):
    """a search past SEARCH_DEADLINE is a 503, another model's rows are a 503 model_mismatch, SEARCH_MODE applies"""
    import time

    app = lab.create_app(embedder=SlowEmbedder(), database_url=db_url, settings=settings(search_deadline=1.0))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            started = time.perf_counter()
            response = await search(client, "a slow provider")
            took = time.perf_counter() - started
    assert response.status_code == 503 and "Retry-After" in response.headers, response.text
    assert took < 2.5, f"answered after {took:.1f} s with a 1 s SEARCH_DEADLINE: run the search inside the deadline"
    app = lab.create_app(embedder=data["embedder"], database_url=db_url, settings=settings(search_mode="hybrid"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            body = (await search(client, "vacuum", min_score=0.0)).json()
            assert body.get("mode") == "hybrid", f"SEARCH_MODE=hybrid, yet the search ran as {body.get('mode')!r}"
    await conn.execute(
        """UPDATE embeddings SET metadata = metadata || '{"model": "other/model"}' WHERE id = $1""", data["ids"][0]
    )
    app = lab.create_app(embedder=data["embedder"], database_url=db_url, settings=settings())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            response = await search(client, "vacuum", min_score=0.0)
    assert response.status_code == 503 and response.json().get("error") == "model_mismatch", (
        f"a row made by another model must stop the search (503 model_mismatch), got {response.status_code}"
    )


# ---------------------------------------------------------------------------------------------------------------------
# The embedding client (embedding_client.py), against the course's loopback server speaking OpenAI's wire format
# ---------------------------------------------------------------------------------------------------------------------
SECRET = "sk-check-0123456789-secret"


@pytest.fixture
def provider():
    with FakeProviderServer() as server:  # answers `data` in shuffled order, as OpenAI does not promise any
        yield server


@pytest.fixture
async def embedding_client(lab, provider):
    client = lab.EmbeddingClient(provider.openai_base_url, "text-embedding-ada-002", SECRET, backoff=0.01)
    yield client
    await client.aclose()


@pytest.mark.hint(
    "One POST {base_url}/embeddings per call: JSON {model, input: [texts]}, header Authorization: Bearer <key>. "
    "The answer's `data` items come in any order: sort them by their `index`.",
    more="items = sorted(response.json()['data'], key=lambda item: item['index']); then "
    "answer_vectors([item['embedding'] for item in items], len(texts)).",
)
@pytest.mark.points(2)
async def test_embedding_client_sends_the_batch_and_orders_by_index(lab, provider, embedding_client):
    """EmbeddingClient.embed() posts the batch with the model and the Bearer key, and returns vectors in input order"""
    texts = [f"text number {i} about {w}" for i, w in enumerate(["vacuum", "index", "backup", "json", "trigger"])]
    vectors = await embedding_client.embed(texts)
    assert len(provider.requests) == 1, f"{len(provider.requests)} requests for one batch: send the texts together"
    request = provider.requests[0]
    assert request["path"] == "/v1/embeddings", f"posted to {request['path']}"
    assert request["json"].get("model") == "text-embedding-ada-002" and request["json"].get("input") == texts, (
        f"the body must carry the model and the inputs: {str(request['json'])[:200]}"
    )
    auth = {k.lower(): v for k, v in request["headers"].items()}.get("authorization")
    assert auth == f"Bearer {SECRET}", "send the key as `Authorization: Bearer <key>`"
    expected = np.asarray(provider.vectors(texts), dtype=np.float32)
    got = np.asarray(vectors, dtype=np.float32)
    assert got.shape == (5, 1536), f"expected 5 vectors of 1536, got {got.shape}"
    cosine = (got * expected).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert (cosine > 0.999).all(), (
        "the vectors are not in the order of the texts: the server answers `data` in any order, sort by `index`"
    )


@pytest.mark.hint(
    "429 and 5xx mean 'not now': wait what the server's Retry-After says (course.embeddings has a reader for it), "
    "falling back to the backoff only when it says nothing, then try again."
)
@pytest.mark.points(2)
async def test_embedding_client_waits_as_long_as_retry_after_says(lab, provider, embedding_client):
    """a 429 or 503 with Retry-After: 1 is retried after about one second, and the call then succeeds"""
    import time

    for status in (429, 503):
        provider.reset()
        provider.script(Step(status, retry_after="1"))
        started = time.perf_counter()
        vectors = await embedding_client.embed(["retry me"])
        waited = time.perf_counter() - started
        assert len(vectors) == 1 and len(provider.requests) == 2, (
            f"HTTP {status} then success: expected 2 requests and a vector, got {len(provider.requests)} requests"
        )
        assert waited >= 0.9, (
            f"HTTP {status} with Retry-After: 1 was retried after {waited:.2f} s: honour the server's Retry-After"
        )


@pytest.mark.hint("A 4xx other than 429 means 'never like this': an EmbeddingRequestError straight away, no retry.")
async def test_embedding_client_does_not_retry_a_refused_request(lab, provider, embedding_client):
    """a 400 or 401 is not retried: one request, then EmbeddingRequestError with the status"""
    from course.embeddings import EmbeddingRequestError

    for status in (400, 401):
        provider.reset()
        provider.script(status, status, status)
        with pytest.raises(EmbeddingRequestError) as info:
            await embedding_client.embed(["refused"])
        assert len(provider.requests) == 1, f"HTTP {status} was sent {len(provider.requests)} times: do not retry it"
        assert info.value.status_code == status, f"the error's status_code is {info.value.status_code}, not {status}"


@pytest.mark.hint(
    "Retries live inside the request's deadline (course.budgets.time_left()): an attempt's timeout is cut to "
    "what is left, and a wait that would not fit is not taken: give up with an EmbeddingUnavailable that says when to "
    "retry.",
    more="left = time_left(); before sleeping: if left is not None and wait >= left: raise EmbeddingUnavailable(..., "
    "wait). Also stop after max_retries retries.",
)
@pytest.mark.points(2)
async def test_embedding_client_gives_up_within_the_deadline(lab, provider, embedding_client):
    """a provider that keeps failing costs at most the deadline, and max_retries bounds the attempts"""
    import time

    from course.budgets import deadline
    from course.embeddings import EmbeddingUnavailable

    provider.fail_always(503, retry_after="5")
    started = time.perf_counter()
    with deadline(1.0), pytest.raises(EmbeddingUnavailable) as info:
        await embedding_client.embed(["hopeless"])
    took = time.perf_counter() - started
    assert took < 1.0, f"gave up after {took:.2f} s, past the 1 s deadline: a 5 s wait cannot fit, do not take it"
    assert info.value.retry_after, "say when to retry: EmbeddingUnavailable(message, retry_after)"
    provider.reset()
    provider.script(Step(delay=3), Step(delay=3))  # a provider that hangs
    started = time.perf_counter()
    with deadline(1.0), pytest.raises(EmbeddingUnavailable):
        await embedding_client.embed(["no answer"])
    took = time.perf_counter() - started
    assert took < 1.5, f"a hung provider held the call {took:.2f} s past a 1 s deadline: cut the timeout to time_left()"
    provider.reset()
    provider.fail_always(503, retry_after="0")
    client = lab.EmbeddingClient(provider.openai_base_url, "text-embedding-ada-002", SECRET, max_retries=2, backoff=0)
    try:
        with pytest.raises(EmbeddingUnavailable):
            await client.embed(["still down"])
    finally:
        await client.aclose()
    assert len(provider.requests) == 3, f"max_retries=2 means 3 attempts in all, got {len(provider.requests)}"


@pytest.mark.hint(
    "Retries also spend from the process's retry budget: after every failed attempt that could be retried, ask "
    "course.budgets.may_retry() (it counts the failure) and give up when it says no.",
    more="allowed = may_retry() right after a 429/5xx, timeout or connection error; then stop if not allowed, as you "
    "stop after max_retries or when the wait does not fit in time_left().",
)
@pytest.mark.points(2)
async def test_embedding_client_spends_the_process_retry_budget(lab, provider):
    """every failed attempt is counted against the process's retry budget, and a spent budget stops the retries"""
    from course.budgets import RetryThrottle, retry_budget
    from course.embeddings import EmbeddingUnavailable

    provider.fail_always(503, retry_after="0")
    client = lab.EmbeddingClient(provider.openai_base_url, "text-embedding-ada-002", SECRET, max_retries=0, backoff=0)
    throttle = RetryThrottle(max_tokens=10, token_ratio=0.1)
    try:
        with retry_budget(throttle):
            for _ in range(3):
                with pytest.raises(EmbeddingUnavailable):
                    await client.embed(["down"])
    finally:
        await client.aclose()
    assert throttle.tokens == 7, (
        f"3 failed attempts left {throttle.tokens:g} of 10 tokens, not 7: call may_retry() after every failure, "
        "the last attempt's too"
    )
    provider.reset()
    provider.fail_always(503, retry_after="0")
    client = lab.EmbeddingClient(provider.openai_base_url, "text-embedding-ada-002", SECRET, max_retries=4, backoff=0)
    throttle = RetryThrottle(max_tokens=10, token_ratio=0.1)
    throttle.tokens = 6  # one more failure leaves half: no retry
    try:
        with retry_budget(throttle), pytest.raises(EmbeddingUnavailable):
            await client.embed(["still down"])
    finally:
        await client.aclose()
    assert len(provider.requests) == 1, (
        f"{len(provider.requests)} attempts with the retry budget spent: one attempt, then give up when may_retry() "
        "says no"
    )


@pytest.mark.hint("The key goes in the Authorization header and nowhere else: not in a message, a repr or a log line.")
async def test_embedding_client_keeps_the_key_out_of_errors_and_logs(lab, provider, embedding_client, caplog):
    """no error message, repr or log line of the client contains the API key"""
    import logging

    from course.embeddings import EmbeddingError

    caplog.set_level(logging.DEBUG)
    seen = [repr(embedding_client)]
    for step in (Step(401, body=f"Incorrect API key provided: {SECRET}"), Step(500)):
        provider.reset()
        provider.script(step, step, step, step, step, step)
        with pytest.raises(EmbeddingError) as info:
            from course.budgets import deadline

            with deadline(0.5):
                await embedding_client.embed(["secret"])
        seen += [str(info.value), repr(info.value)]
    unreachable = lab.EmbeddingClient("http://127.0.0.1:9/v1", "m", SECRET, max_retries=0)
    with pytest.raises(EmbeddingError) as info:
        await unreachable.embed(["nobody there"])
    await unreachable.aclose()
    seen += [str(info.value), caplog.text]
    leaked = [text[:120] for text in seen if SECRET in text or SECRET[-12:] in text]
    assert not leaked, f"the API key appears in: {leaked}"


@pytest.mark.hint(
    "An answer that is not OpenAI's shape (HTML from a proxy, items missing) is an EmbeddingError "
    "(EmbeddingBadResponse), not a KeyError or a crash; answer_vectors() checks the vectors themselves."
)
async def test_embedding_client_refuses_an_answer_it_cannot_use(lab, provider, embedding_client):
    """HTML, a missing item or a NaN in the answer raise EmbeddingError, never another exception"""
    from course.embeddings import EmbeddingError

    def drop_one(payload):
        return {**payload, "data": payload["data"][1:]}

    def nan(payload):
        payload["data"][0]["embedding"][0] = float("nan")
        return payload

    for step in (Step(raw=b"<html>proxy error</html>"), Step(mutate=drop_one), Step(mutate=nan)):
        provider.reset()
        provider.script(step)
        with pytest.raises(EmbeddingError):
            await embedding_client.embed(["one", "two"])


@pytest.mark.hint(
    "A model answers with vectors of one width, known in advance (EmbeddingClient.width): an answer of another "
    "width comes from another model and is refused, not padded; answer_vectors() checks it when given the width."
)
async def test_embedding_client_refuses_an_answer_of_another_width(lab):
    """a client of ada-002 (1536 numbers) refuses a 768-number answer, so a wrong model cannot poison the search"""
    from course.embeddings import EmbeddingError

    with FakeProviderServer(dimensions=768) as narrow:
        client = lab.EmbeddingClient(narrow.openai_base_url, "text-embedding-ada-002", SECRET)
        try:
            with pytest.raises(EmbeddingError):
                await client.embed(["answered by a 768-number model"])
        finally:
            await client.aclose()
