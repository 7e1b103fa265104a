"""The embedding providers: the offline model, hashing, and the OpenAI/Gemini clients against a local server."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from pydantic import SecretStr

from course.embeddings import (
    EmbeddingBadResponse,
    EmbeddingInputTooLong,
    EmbeddingQuotaExceeded,
    EmbeddingRequestError,
    EmbeddingUnavailable,
    GeminiEmbedder,
    HashingEmbedder,
    LocalEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    estimate_tokens,
    get_embedder,
    pad_to,
)
from course.budgets import deadline
from course.fake_providers import FakeProviderServer, Step
from course.resilience import GuardedEmbedder
from course.settings import Settings


def cos(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# --- offline -------------------------------------------------------------------------------------------------------
async def test_local_model_is_semantic_normalised_and_1536_wide():
    e = LocalEmbedder()
    v = await e.embed(
        [
            "How do I create an index on a table?",
            "Building an index for a database table",
            "The weather is sunny at the beach today",
        ]
    )
    assert np.asarray(v).shape == (3, 1536)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert not np.any(np.asarray(v)[:, 256:]), "dimensions past the model's 256 are zero padding"
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.2, "a paraphrase must be much closer than an unrelated sentence"


async def test_local_model_batches_through_a_thread_and_matches_small_calls():
    e = LocalEmbedder()
    texts = [f"document number {i} about vacuum and indexes" for i in range(100)]
    big = await e.embed(texts)
    small = await e.embed(texts[:3])
    assert np.allclose(big[:3], small, atol=1e-6)


async def test_minilm_is_semantic_normalised_384_wide_and_the_same_in_any_batch():
    e = MiniLMEmbedder()
    texts = [
        "How do I create an index on a table?",
        "Building an index for a database table",
        "The weather is sunny at the beach today",
        "word " * 400,  # past the 128 tokens the model reads: truncated, not refused
    ]
    v = np.asarray(await e.embed(texts, "query"))
    assert v.shape == (4, 1536) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.any(v[:, 256:384]) and not np.any(v[:, 384:]), "384 dimensions of its own, then zero padding"
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.4
    # a batch pads its texts to the longest; the padding must not change anyone's vector
    alone = [np.asarray(await e.embed([t]))[0] for t in texts[:3]]
    assert np.allclose(alone, v[:3], atol=1e-5)


async def test_minilm_without_its_wheel_says_how_to_install_it(monkeypatch):
    import importlib.util

    from course import embeddings

    embeddings._load_minilm.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(EmbeddingRequestError, match="requirements-minilm.txt"):
            await MiniLMEmbedder().embed(["a question"])
    finally:
        embeddings._load_minilm.cache_clear()


def test_padding_preserves_cosine_l2_and_inner_product_exactly():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 256)).astype(np.float32)
    pa, pb = pad_to(np.stack([a, b]))
    assert pa.shape == (1536,)
    assert np.dot(pa, pb) == np.dot(a, b)
    assert np.linalg.norm(pa - pb) == np.linalg.norm(a - b)
    assert cos(pa, pb) == pytest.approx(cos(a, b), abs=0)
    with pytest.raises(ValueError):
        pad_to(np.zeros((1, 2000), dtype=np.float32))


@pytest.mark.parametrize("provider", ["local", "minilm", "hashing"])
@pytest.mark.parametrize("bad", [[""], ["ok", "   \n\t"], "a bare string", [None]])
async def test_empty_or_wrong_input_is_refused(provider, bad):
    with pytest.raises(ValueError):
        await get_embedder(provider).embed(bad)


async def test_hashing_is_deterministic_and_lexical():
    e = HashingEmbedder()
    a1, a2, b = await e.embed(["vacuum full table", "vacuum full table", "completely different words"])
    assert a1 == a2
    assert cos(a1, b) < 0.3
    assert e.model_id != LocalEmbedder.model_id


def test_unknown_provider_and_missing_key_are_clear():
    with pytest.raises(ValueError, match="Unknown embedding provider"):
        get_embedder("word2vec")
    with pytest.raises(EmbeddingRequestError, match="OPENAI_API_KEY"):
        get_embedder("openai", settings=Settings(openai_api_key=None, _env_file=None))


# --- HTTP providers against a local server --------------------------------------------------------------------------
@pytest.fixture
def server():
    with FakeProviderServer() as s:
        yield s


def openai(server, **kw) -> OpenAIEmbedder:
    kw.setdefault("backoff_initial", 0.01)
    return OpenAIEmbedder(base_url=server.openai_base_url, model="text-embedding-ada-002", api_key="sk-test", **kw)


def gemini(server, **kw) -> GeminiEmbedder:
    kw.setdefault("backoff_initial", 0.01)
    return GeminiEmbedder(base_url=server.gemini_base_url, model="gemini-embedding-001", api_key="g-test", **kw)


async def test_openai_request_shape_order_and_batching(server):
    texts = [f"text number {i}" for i in range(7)]
    async with openai(server, batch_size=3) as e:
        vectors = await e.embed(texts)
    assert [len(r["json"]["input"]) for r in server.requests] == [3, 3, 1], "batches of batch_size"
    first = server.requests[0]
    assert first["path"] == "/v1/embeddings"
    assert first["headers"]["Authorization"] == "Bearer sk-test"
    assert first["json"]["model"] == "text-embedding-ada-002" and "dimensions" not in first["json"]
    # the server shuffles `data`; the client must put each vector back with its text
    assert np.allclose(vectors, server.vectors(texts), atol=1e-6)
    assert e.model_id == "openai/text-embedding-ada-002"


async def test_openai_v3_models_ask_for_1536_dimensions(server):
    async with OpenAIEmbedder(base_url=server.openai_base_url, model="text-embedding-3-large", api_key="k") as e:
        await e.embed(["hello"])
    assert server.requests[0]["json"]["dimensions"] == 1536


async def test_rate_limit_is_retried_honouring_retry_after(server):
    server.script(Step(429, retry_after="0.3"), Step(503))
    started = time.perf_counter()
    async with openai(server) as e:
        vectors = await e.embed(["hello there"])
    assert len(server.requests) == 3, "two failures, then success"
    assert time.perf_counter() - started >= 0.3, "Retry-After must be honoured"
    assert np.allclose(vectors, server.vectors(["hello there"]), atol=1e-6)


async def test_persistent_outage_raises_unavailable_with_retry_after(server):
    server.fail_always(503, retry_after="0")
    async with openai(server, max_retries=2) as e:
        with pytest.raises(EmbeddingUnavailable) as info:
            await e.embed(["hello"])
    assert len(server.requests) == 3, "1 attempt + 2 retries, then give up"
    assert info.value.retry_after == 0
    assert "unavailable" in str(info.value)


@pytest.mark.parametrize(
    "status, message, text, code",
    [
        (400, "'input' is invalid", "rejected the request", 400),
        (400, "This model's maximum context length is 8191 tokens", "says the input is too long", 422),
        (401, "Incorrect API key provided", "OPENAI_API_KEY", 401),
    ],
)
async def test_client_errors_are_not_retried_and_say_why(server, status, message, text, code):
    server.script(Step(status, body=message))
    async with openai(server) as e:
        with pytest.raises(EmbeddingRequestError, match=text) as info:
            await e.embed(["hello"])
    assert len(server.requests) == 1
    assert info.value.status_code == code
    if status == 400:
        assert message in str(info.value), "the provider's own message is passed on"


async def test_timeouts_are_retried_then_reported(server):
    server.script(Step(delay=1.0), Step(delay=1.0))
    async with openai(server, timeout=0.2, max_retries=1) as e:
        with pytest.raises(EmbeddingUnavailable, match="timed out"):
            await e.embed(["slow"])
    server.reset()
    async with openai(server, timeout=0.2, max_retries=1) as e:
        server.script(Step(delay=1.0))
        assert len(await e.embed(["slow then fast"])) == 1


async def test_unreachable_provider_is_unavailable():
    e = OpenAIEmbedder(base_url="http://127.0.0.1:9", model="m", api_key="k", max_retries=1, backoff_initial=0.01)
    with pytest.raises(EmbeddingUnavailable, match="cannot reach"):
        await e.embed(["hello"])
    await e.aclose()


async def test_gemini_batch_request_normalises_vectors(server):
    texts = [f"gemini text {i}" for i in range(130)]
    async with gemini(server) as e:
        vectors = await e.embed(texts)
    assert [len(r["json"]["requests"]) for r in server.requests] == [100, 30], "Gemini allows 100 per batch"
    req = server.requests[0]
    assert req["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert req["headers"]["x-goog-api-key"] == "g-test"
    item = req["json"]["requests"][0]
    assert item["model"] == "models/gemini-embedding-001" and item["outputDimensionality"] == 1536
    assert item["content"]["parts"][0]["text"] == texts[0]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5), "Gemini's 1536-d output is normalised here"
    assert np.allclose(vectors, server.vectors(texts), atol=1e-6)


async def test_gemini_errors(server):
    server.script(Step(429, retry_after="0"), Step(403))
    async with gemini(server) as e:
        with pytest.raises(EmbeddingRequestError, match="GEMINI_API_KEY"):
            await e.embed(["x"])
    assert len(server.requests) == 2


async def test_an_openai_compatible_model_of_another_width_is_zero_padded():
    """OPENAI_BASE_URL may serve a 768-d model (Ollama, vLLM…), configured with EMBEDDING_NATIVE_DIMENSIONS: padded
    to 1536, distances unchanged; an answer of another width is refused."""
    texts = ["vacuum a table", "vacuum tables often", "replication slots"]
    with FakeProviderServer(dimensions=768) as s:
        async with OpenAIEmbedder(
            base_url=s.openai_base_url, model="nomic-embed-text", api_key="sk-test", native_dimensions=768
        ) as e:
            vectors = np.asarray(await e.embed(texts))
            assert vectors.shape == (3, 1536) and e.native_dimensions == 768
            assert not vectors[:, 768:].any(), "the padding is zeros"
            native = np.asarray(s.vectors(texts))
            native /= np.linalg.norm(native, axis=1, keepdims=True)
            assert np.allclose(vectors @ vectors.T, native @ native.T, atol=1e-6), "cosine is the model's own"
            s.script(
                Step(200, mutate=lambda p: {**p, "data": [{**d, "embedding": d["embedding"][:512]} for d in p["data"]]})
            )
            with pytest.raises(EmbeddingBadResponse, match="shape"):
                await e.embed(["hello"])


async def test_a_models_width_is_known_in_advance_never_learnt_from_an_answer():
    """Width poisoning: a fresh ada-002 client whose first answer is 768-d refuses it (502), and the correct 1536-d
    answers after it are accepted; a model the course does not know needs its width configured."""
    with FakeProviderServer(dimensions=768) as narrow, FakeProviderServer() as right:
        async with OpenAIEmbedder(base_url=narrow.openai_base_url, model="text-embedding-ada-002", api_key="k") as e:
            with pytest.raises(EmbeddingBadResponse, match="shape"):
                await e.embed(["the first answer is 768-d"])
            e.base_url = right.openai_base_url
            assert len((await e.embed(["then 1536-d, as ada-002 answers"]))[0]) == 1536
        async with OpenAIEmbedder(base_url=narrow.openai_base_url, model="some-new-model", api_key="k") as e:
            with pytest.raises(EmbeddingBadResponse, match="EMBEDDING_NATIVE_DIMENSIONS"):
                await e.embed(["unknown width"])


async def test_wider_vectors_than_the_column_are_an_error_that_says_what_to_do(server):
    server.script(
        Step(200, mutate=lambda p: {**p, "data": [{**d, "embedding": d["embedding"] * 2} for d in p["data"]]})
    )
    async with openai(server) as e:
        with pytest.raises(EmbeddingBadResponse, match="3072 dimensions, more than the column's 1536"):
            await e.embed(["hello"])


async def test_gemini_asked_for_1536_must_answer_1536():
    with FakeProviderServer(dimensions=768) as s:
        async with gemini(s) as e:
            with pytest.raises(EmbeddingBadResponse, match="shape"):
                await e.embed(["hello"])


async def test_gemini_embeds_queries_and_documents_with_their_retrieval_task_types(server):
    async with gemini(server) as e:
        await e.embed(["a stored passage"])
        await e.embed(["what is a passage?"], kind="query")
        with pytest.raises(ValueError, match="kind must be"):
            await e.embed(["x"], kind="question")
    assert [r["json"]["requests"][0]["taskType"] for r in server.requests] == ["RETRIEVAL_DOCUMENT", "RETRIEVAL_QUERY"]


async def test_coalescing_keeps_queries_and_documents_apart():
    calls = []

    class Slow(HashingEmbedder):
        async def embed(self, texts, kind="document"):
            calls.append(kind)
            await asyncio.sleep(0.05)
            return self.embed_sync(texts)

    guarded = GuardedEmbedder(Slow())
    await asyncio.gather(guarded.embed(["same"], kind="query"), guarded.embed(["same"]), guarded.embed(["same"]))
    assert sorted(calls) == ["document", "query"] and guarded.coalesced == 1


async def test_the_half_open_breaker_lets_exactly_one_probe_through():
    """After an outage opens the breaker and its reset time passes, 20 concurrent distinct calls make one provider
    call (the probe); the others fail fast; the probe's success closes the breaker for everyone."""
    from course.embeddings import EmbeddingUnavailable
    from course.resilience import CircuitOpen

    calls, failing = [], [True]

    class Flaky(HashingEmbedder):
        async def embed(self, texts, kind="document"):
            calls.append(texts[0])
            await asyncio.sleep(0.05)
            if failing[0]:
                raise EmbeddingUnavailable("down", retry_after=1)
            return self.embed_sync(texts)

    guarded = GuardedEmbedder(Flaky(), failure_threshold=3, reset_seconds=0.3)
    for i in range(3):
        with pytest.raises(EmbeddingUnavailable):
            await guarded.embed([f"outage {i}"])
    assert guarded.state == "open"
    await asyncio.sleep(0.35)
    failing[0] = False
    calls.clear()
    results = await asyncio.gather(*(guarded.embed([f"question {i}"]) for i in range(20)), return_exceptions=True)
    assert len(calls) == 1, f"{len(calls)} provider calls while half-open: exactly one probe"
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, CircuitOpen) for r in results if isinstance(r, Exception))
    assert guarded.state == "closed"
    assert len(await guarded.embed(["after the probe"])) == 1


async def test_factory_uses_settings(server):
    settings = Settings(
        _env_file=None,
        openai_api_key="sk-x",
        openai_base_url=server.openai_base_url,
        openai_embedding_model="my-model",
        embedding_native_dimensions=1536,  # a model the course does not know: its width is configured
    )
    e = get_embedder("openai", settings=settings)
    assert isinstance(e, OpenAIEmbedder) and e.model == "my-model"
    await e.embed(["hi"])
    await e.aclose()
    assert server.requests[0]["json"]["model"] == "my-model"


RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


async def test_gemini_retry_delay_in_the_error_body_is_honoured(server):
    """Gemini sends no Retry-After header: its wait is RetryInfo.retryDelay in the error details."""
    server.script(Step(429, error={"details": [{"@type": RETRY_INFO, "retryDelay": "0.4s"}]}))
    async with gemini(server, backoff_initial=5) as e:  # the backoff alone would wait seconds
        started = time.perf_counter()
        assert len(await e.embed(["rate limited once"])) == 1
    assert 0.4 <= time.perf_counter() - started < 1.5
    assert e.stats["retries"] == 1 and e.stats["requests"] == 2


async def test_gemini_per_day_quota_is_not_retried(server):
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/embed_content_requests",
        "quotaId": "EmbedContentRequestsPerDayPerProjectPerModel-FreeTier",
    }
    server.script(
        Step(
            429,
            body="Quota exceeded",
            error={
                "details": [
                    {"@type": QUOTA_FAILURE, "violations": [violation]},
                    {"@type": RETRY_INFO, "retryDelay": "40s"},
                ]
            },
        )
    )
    async with gemini(server) as e:
        with pytest.raises(EmbeddingQuotaExceeded, match="quota"):
            await e.embed(["over quota"])
    assert len(server.requests) == 1


async def test_a_deadline_stops_retries_that_could_not_finish_in_time(server):
    server.script(Step(503, retry_after="5"))
    async with openai(server) as e:
        started = time.perf_counter()
        with deadline(1.0), pytest.raises(EmbeddingUnavailable, match="after 1 attempt") as info:
            await e.embed(["no time to wait 5 s"])
    assert time.perf_counter() - started < 0.5 and info.value.retry_after == 5


async def test_batches_are_sized_by_tokens_as_well_as_items(server):
    async with openai(server, batch_size=100) as e:
        e.max_request_tokens = 1000
        texts = ["x" * 1500] * 3 + ["short"] * 5  # 500 estimated tokens each, then tiny ones
        assert [len(b) for b in e._batches(texts)] == [2, 6]
        assert len(await e.embed(texts)) == 8 and len(server.requests) == 2
        with pytest.raises(EmbeddingInputTooLong, match="8,191"):
            await e.embed(["fine", "y" * 30_000])
    assert len(server.requests) == 2, "an over-long text is refused before anything is sent"


def test_the_token_estimate_over_counts_english_and_counts_bytes_for_other_scripts():
    assert estimate_tokens("How do I create an index on a table?") == 12  # 36 bytes, 9 words
    assert estimate_tokens("索引") == 2  # 6 bytes


async def test_a_new_http_provider_is_one_class_and_its_settings(server):
    """The registry: subclassing _HTTPEmbedder with a `provider` name registers it; get_embedder builds it from
    <name>_api_key / _base_url / _embedding_model."""
    from course.embeddings import PROVIDERS, _HTTPEmbedder

    class AcmeSettings(Settings):
        acme_api_key: SecretStr | None = None
        acme_base_url: str = "https://api.acme.example/v1"
        acme_embedding_model: str = "acme-embed-1"

    class AcmeEmbedder(_HTTPEmbedder):
        provider = "acme"

        def _request(self, texts, kind):  # the fake server speaks OpenAI's wire format
            return (
                f"{self.base_url}/embeddings",
                {"Authorization": f"Bearer {self._api_key}"},
                {"model": self.model, "input": texts},
            )

        def _parse(self, payload, count):
            return [item["embedding"] for item in sorted(payload["data"], key=lambda item: item["index"])]

    try:
        settings = AcmeSettings(_env_file=None, acme_api_key="k", acme_base_url=server.openai_base_url)
        async with get_embedder("acme", settings=settings) as e:
            assert isinstance(e, AcmeEmbedder) and e.model_id == "acme/acme-embed-1"
            assert len((await e.embed(["hello"]))[0]) == 1536
        assert server.requests[0]["headers"]["Authorization"] == "Bearer k"
    finally:
        PROVIDERS.pop("acme", None)
