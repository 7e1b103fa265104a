"""The search service when the embedding provider or the database misbehaves, against loopback fakes that speak the
providers' wire formats: every failure answers within the deadline (plus a small margin) with the documented status
and error kind, malformed answers are 502, identical concurrent misses share one provider call, and the breaker
fails fast until a probe succeeds."""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from course import database
from course.table import EMBEDDINGS_TABLE_DDL
from course.embeddings import HashingEmbedder, OpenAIEmbedder
from course.fake_providers import FakeProviderServer, Step
from course.settings import Settings
from solutions.objective6 import create_app

DEADLINE = 1.5
MARGIN = 0.75  # event loop, thread hand-offs and a shared 2-core machine
MODEL = "text-embedding-ada-002"
TEXTS = ["VACUUM reclaims storage.", "CREATE INDEX builds an index.", "pg_dump makes a backup."]


@pytest.fixture(scope="module")
def provider():
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def table_url(provider):
    """A database whose rows were embedded by the fake OpenAI model (so the service's model check passes)."""
    with database.temporary_database("faults") as url:
        vectors = np.asarray(provider.vectors(TEXTS), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

        async def load():
            conn = await database.connect(url)
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await conn.execute(EMBEDDINGS_TABLE_DDL)
            for text, vector in zip(TEXTS, vectors):
                await conn.execute(
                    "INSERT INTO embeddings (content, metadata, embedding) VALUES ($1, $2, $3::vector)",
                    text,
                    {"model": f"openai/{MODEL}"},
                    str(vector.tolist()),
                )
            await conn.close()

        asyncio.run(load())
        yield url


def settings(**overrides) -> Settings:
    values = dict(search_deadline=DEADLINE, embedding_breaker_failures=3, embedding_breaker_reset=1.0)
    return Settings(_env_file=None, **{**values, **overrides})


class Service:
    """The app in-process with an OpenAI client pointed at the fake; `search()` times each answer."""

    def __init__(self, provider, url, embedder=None, **overrides):
        provider.reset()
        self.provider = provider
        self.embedder = embedder or OpenAIEmbedder(
            base_url=provider.openai_base_url, model=MODEL, api_key="sk-test", backoff_initial=0.05, backoff_max=0.2
        )
        self.app = create_app(embedder=self.embedder, database_url=url, settings=settings(**overrides))
        self.queries = 0

    async def __aenter__(self):
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://faults", timeout=60
        )
        return self

    async def __aexit__(self, *exc):
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)
        if hasattr(self.embedder, "aclose"):
            await self.embedder.aclose()

    async def search(self, query: str | None = None) -> tuple[httpx.Response, float]:
        self.queries += 1
        started = time.perf_counter()
        response = await self.client.post(
            "/search", json={"query": query or f"an uncached question {self.queries}"}, params={"min_score": -1}
        )
        return response, time.perf_counter() - started

    async def metrics(self) -> dict[tuple[str, tuple], float]:
        text = (await self.client.get("/metrics")).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def _drop_index(payload):
    del payload["data"][0]["index"]
    return payload


def _duplicate_item(payload):
    payload["data"].append(dict(payload["data"][0]))
    return payload


def _nan(payload):
    payload["data"][0]["embedding"][7] = math.nan
    return payload


async def test_a_healthy_provider_answers_and_health_says_so(provider, table_url):
    async with Service(provider, table_url) as service:
        response, _ = await service.search("vacuum")
        assert response.status_code == 200 and response.json()["count"] == 3
        health = (await service.client.get("/healthz")).json()
        assert health["status"] == "ok" and health["embedder"]["breaker"] == "closed"
        assert health["database"]["models"] == {f"openai/{MODEL}": 3}


@pytest.mark.parametrize(
    "name, step",
    [
        ("outage (503, Retry-After: 1)", Step(503, retry_after="1")),
        ("outage without a hint", Step(503)),
        ("rate limited for longer than the deadline", Step(429, retry_after="30")),
        ("hung", Step(delay=30)),
        ("trickled answer", Step(trickle=0.05)),
    ],
)
async def test_an_unavailable_provider_is_503_within_the_deadline(provider, table_url, name, step):
    async with Service(provider, table_url) as service:
        provider.script(*[step] * 50)
        response, seconds = await service.search()
        assert response.status_code == 503, response.text
        assert seconds <= DEADLINE + MARGIN, f"{name}: answered after {seconds:.2f} s"
        assert response.json()["error"] in ("embedding_unavailable", "deadline")
        assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    "name, step, message",
    [
        ("HTML instead of JSON", Step(raw=b"<html><body>Bad gateway</body></html>"), "Unexpected response"),
        ("truncated JSON", Step(raw=b'{"object": "list", "data": [{"index": 0, "embedd'), "Unexpected response"),
        ("an item without its index", Step(mutate=_drop_index), "Unexpected response"),
        ("a duplicate item", Step(mutate=_duplicate_item), "expected indexes"),
        ("NaN in a vector", Step(mutate=_nan), "NaN"),
        ("a JSON array", Step(raw=b"[1, 2, 3]"), "not an object"),
    ],
)
async def test_a_malformed_answer_is_502_at_once(provider, table_url, name, step, message):
    async with Service(provider, table_url) as service:
        provider.script(step)
        response, seconds = await service.search()
        assert response.status_code == 502, f"{name}: {response.text}"
        assert response.json()["error"] == "embedding_invalid" and message in response.json()["detail"]
        assert len(provider.requests) == 1 and seconds < 1, "a malformed answer is not retried"


async def test_an_exhausted_quota_is_502_that_says_quota_and_is_not_retried(provider, table_url):
    async with Service(provider, table_url) as service:
        provider.script(
            Step(
                429,
                body="You exceeded your current quota",
                error={"code": "insufficient_quota", "type": "insufficient_quota"},
            )
        )
        response, _ = await service.search()
        assert response.status_code == 502 and response.json()["error"] == "embedding_quota"
        assert "quota" in response.json()["detail"] and len(provider.requests) == 1


async def test_openai_retry_after_ms_is_honoured(provider, table_url):
    async with Service(provider, table_url) as service:
        provider.script(Step(429, headers={"retry-after-ms": "400"}))
        response, seconds = await service.search()
        assert response.status_code == 200 and len(provider.requests) == 2
        assert 0.4 <= seconds < 1.2, f"waited {seconds:.2f} s for a 400 ms hint"


async def test_identical_concurrent_misses_share_one_provider_call(provider, table_url):
    async with Service(provider, table_url) as service:
        provider.script(Step(delay=0.3))
        answers = await asyncio.gather(*[service.search("the same new question") for _ in range(10)])
        assert [r.status_code for r, _ in answers] == [200] * 10
        assert len(provider.requests) == 1, f"{len(provider.requests)} provider calls for 10 identical misses"
        assert (await service.metrics())[("embedding_provider_events_total", (("event", "coalesced"),))] == 9


@pytest.mark.parametrize("client", ["course", "objective6"])
async def test_an_outage_onset_costs_about_one_provider_call_per_search(provider, table_url, client):
    """20 concurrent distinct misses while the provider starts failing: the process's retry budget stops the retries
    (each client may retry up to 4 times), so the provider gets about one call per search, not five; every search is
    a 503 with Retry-After. Both HTTP clients (the course's and Objective 6's) spend from the same budget."""
    from solutions.objective6 import EmbeddingClient

    if client == "course":
        embedder = OpenAIEmbedder(
            base_url=provider.openai_base_url, model=MODEL, api_key="sk-test", backoff_initial=0.01, backoff_max=0.01
        )
    else:
        embedder = EmbeddingClient(provider.openai_base_url, MODEL, "sk-test", backoff=0.01)
    async with Service(provider, table_url, embedder=embedder, embedding_breaker_failures=50) as service:
        provider.fail_always(503, retry_after="0")
        answers = await asyncio.gather(*[service.search(f"new question {i}") for i in range(20)])
        assert [r.status_code for r, _ in answers] == [503] * 20
        assert all(int(r.headers["Retry-After"]) >= 1 for r, _ in answers)
        calls = len(provider.requests)
        assert calls <= 26, f"{calls} provider calls for 20 searches at an outage's onset: the retry budget is ~1 each"
        health = (await service.client.get("/healthz")).json()
        assert health["embedder"]["retries"] == "throttled"


async def test_the_breaker_opens_fails_fast_and_closes_after_a_good_probe(provider, table_url):
    embedder = OpenAIEmbedder(
        base_url=provider.openai_base_url,
        model=MODEL,
        api_key="sk-test",
        max_retries=1,
        backoff_initial=0.01,
        backoff_max=0.01,
    )
    async with Service(provider, table_url, embedder=embedder) as service:
        # three searches: two attempts, two attempts, then one (its failure leaves half the retry budget: no retry)
        provider.script(*[Step(500)] * 5)
        for _ in range(3):
            assert (await service.search())[0].status_code == 503
        calls = len(provider.requests)
        response, seconds = await service.search()
        assert response.status_code == 503 and seconds < 0.2 and len(provider.requests) == calls, "open: fail at once"
        assert "circuit breaker" in response.json()["detail"] and int(response.headers["Retry-After"]) >= 1
        health = await service.client.get("/healthz")
        assert health.status_code == 503 and health.json()["embedder"]["breaker"] == "open"
        assert health.json()["embedder"]["consecutive_failures"] == 3
        assert "HTTP 500" in health.json()["embedder"]["last_error"]
        metrics = await service.metrics()
        assert metrics[("embedding_breaker_state", ())] == 2
        assert metrics[("embedding_provider_events_total", (("event", "rejected_by_breaker"),))] == 1
        assert metrics[("embedding_provider_events_total", (("event", "retries"),))] == 2
        assert metrics[("search_failed_seconds_count", (("kind", "embedding_unavailable"),))] == 4
        await asyncio.sleep(1.1)  # the breaker lets one probe through; the provider has recovered
        assert (await service.search())[0].status_code == 200
        health = (await service.client.get("/healthz")).json()
        assert (
            health["status"] == "ok"
            and health["embedder"]["breaker"] == "closed"
            and "last_error" not in health["embedder"]
        )
        assert health["embedder"]["consecutive_failures"] == 0


async def test_another_models_table_is_refused_by_search_and_health(provider, table_url):
    async with Service(provider, table_url, embedder=HashingEmbedder()) as service:
        response, _ = await service.search("vacuum")
        assert response.status_code == 503 and response.json()["error"] == "model_mismatch"
        assert "python -m course corpus load" in response.json()["detail"]
        health = await service.client.get("/healthz")
        assert health.status_code == 503 and health.json()["database"]["error"] == "model_mismatch"


async def test_a_document_over_the_models_token_limit_is_422_before_any_call(provider, table_url):
    async with Service(provider, table_url) as service:
        response = await service.client.post("/documents", json={"content": "é€" * 10_000})  # 50 KB of UTF-8
        assert response.status_code == 422 and "tokens" in response.json()["detail"]
        assert provider.requests == []


async def test_a_hung_database_is_503_within_the_deadline(provider, table_url):
    async with Service(provider, table_url) as service:
        await service.search("warm up the pool and the model check")
        locker = await database.connect(table_url)
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE embeddings IN ACCESS EXCLUSIVE MODE")  # every read now waits
                response, seconds = await service.search()
        finally:
            await locker.close()
        assert response.status_code == 503 and seconds <= DEADLINE + MARGIN, (response.text, seconds)
        assert response.json()["error"] == "deadline", (
            "a query cut by the deadline is the deadline, not a dead database"
        )
