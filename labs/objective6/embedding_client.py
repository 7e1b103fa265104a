# lab-fingerprint: 50dbed97216bb8f2
# Starter code generated from solutions/objective6/embedding_client.py by tools/make_labs.py. This file is yours: fill in every TODO.
# `python -m checks N` (or check(N) in the notebook) grades it and gives hints.
"""Objective 6, part 1 — the embedding call: any OpenAI-compatible server over httpx.

`POST {base_url}/embeddings` with a Bearer key, the model and a batch of inputs; OpenAI's answer lists one item per
input with its `index`, in no promised order. The service embeds every query this way: by default through the
course's local model served on 127.0.0.1 in OpenAI's wire format (no key needed), with OPENAI_BASE_URL at OpenAI or
any compatible server (Ollama, vLLM, LM Studio).

A provider fails in two ways that need different answers. 429 and 5xx mean "not now": wait (the server's
`Retry-After` if it sends one, else an exponential backoff) and try again — but only while the request's deadline
leaves time for it and the process's retry budget allows it (during an outage, retries from every request at once
would triple the load on a provider that is already failing). Any other 4xx means "never like this": retrying
cannot help. The API key is a secret: it goes in the Authorization header and nowhere else, never in a message or a
log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from course.budgets import may_retry, time_left
from course.embeddings import (
    EmbedKind,
    EmbeddingBadResponse,
    EmbeddingRequestError,
    EmbeddingUnavailable,
    answer_vectors,
    check_kind,
    known_width,
    retry_after_seconds,
    validate_texts,
)
from course.settings import EMBEDDING_DIMENSIONS

#: The statuses that mean "try again later"; every other error status is final.
RETRYABLE = {429, 500, 502, 503, 504}


class EmbeddingClient:
    """Embeddings from an OpenAI-compatible server (course.embeddings.Embedder: `model_id`, `dimensions`, `embed`).

    `model_id` is what rows record as their model (default `openai/<model>`): queries and rows must come from the
    same model. `width` is how many numbers the model answers with, known in advance (course.embeddings knows the
    usual models; give it for another): an answer of another width comes from another model. `timeout` bounds each
    attempt; `max_retries` bounds the retries after the first attempt; `backoff`
    is the first wait when the server gives no Retry-After (doubling after each retry)."""

    dimensions = EMBEDDING_DIMENSIONS

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        model_id: str | None = None,
        width: int | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url, self.model, self.timeout = base_url.rstrip("/"), model, timeout
        self.model_id = model_id or f"openai/{model}"
        self.width = width or known_width(self.model_id)
        self.max_retries, self.backoff = max_retries, backoff
        self._api_key = api_key
        self._client = client or httpx.AsyncClient()

    def __repr__(self) -> str:  # never the key
        return f"EmbeddingClient({self.base_url!r}, {self.model!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def embed(self, texts: Sequence[str], kind: EmbedKind = "document") -> list[list[float]]:
        """One vector per text, in the order of `texts` (unit length, zero-padded to `dimensions`).

        Raises EmbeddingUnavailable (with `retry_after`) when the server keeps answering 429/5xx, cannot be reached
        or times out, and no retry fits in what is left of the deadline (`course.budgets.time_left()`) or the
        process's retry budget (`course.budgets.may_retry()`); raises EmbeddingRequestError (with `status_code`) at
        once for any other error status."""
        check_kind(kind)  # OpenAI's models embed questions and passages alike
        texts = validate_texts(texts)
        if not texts:
            return []
        raise NotImplementedError(
            "TODO: POST {base_url}/embeddings with the model and the inputs (Bearer key when there is one), an attempt's timeout cut to the deadline's time left; 200: the items sorted by their \"index\", checked with answer_vectors() against the model's width; 429/5xx, a timeout or no connection: wait what retry_after_seconds() reads, else the backoff, and try again while attempts, the deadline and may_retry() allow (ask it after every such failure: it counts them); any other status: EmbeddingRequestError at once"
        )
