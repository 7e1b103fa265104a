"""The process's protection of an embedding provider: a circuit breaker, a retry budget and request coalescing.

Retries live inside each request (the HTTP clients, within course.budgets' deadline). Without more, a provider outage
multiplies: ten concurrent searches for the same new query make ten provider calls, each retried, each waiting its
own backoff. `GuardedEmbedder` wraps any embedder so that

* identical concurrent calls share one provider call (coalescing: the first caller's call, the others wait for it;
  a caller that gives up does not cancel it for the rest);
* after `failure_threshold` consecutive failures the breaker opens: calls fail at once with EmbeddingUnavailable and
  the seconds until the next probe (the service's `Retry-After`); after `reset_seconds` exactly one call is let
  through as a probe (the others meanwhile fail fast as if open), and its success closes the breaker;
* every call runs within the process's retry budget (course.budgets.RetryThrottle, which the clients consult through
  `may_retry()`): once attempts mostly fail, each call makes about one attempt instead of max_retries + 1;
* its state is reported for /healthz and metrics.

The breaker is purgatory's (a maintained, dependency-free implementation of the closed/open/half-open model).
Coalescing is a dozen lines over asyncio tasks: the libraries that do it (async-lru's alru_cache, aiocache) come
with a cache of their own, and the service already has one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from course.budgets import RetryThrottle, retry_budget
from course.embeddings import EmbeddingError, EmbeddingRequestError, EmbeddingUnavailable, EmbedKind, check_kind

#: Outcomes that say nothing about the provider's health: a refused key or input, or a quota to raise (someone must
#: act, and each such call fails fast anyway). purgatory treats an excluded outcome as a success.
NOT_PROVIDER_FAILURES = (EmbeddingRequestError,)


class CircuitOpen(EmbeddingUnavailable):
    """Refused without calling the provider: the breaker is open after repeated failures."""


class GuardedEmbedder:
    """`inner` behind a circuit breaker, with identical concurrent calls coalesced. Same interface as an Embedder."""

    def __init__(
        self,
        inner: Any,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        retry_throttle: RetryThrottle | None = None,
    ):
        self.inner = inner
        self.model_id: str = inner.model_id
        self.dimensions: int = inner.dimensions
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=failure_threshold, default_ttl=reset_seconds, exclude=list(NOT_PROVIDER_FAILURES)
        )
        self.retry_throttle = retry_throttle or RetryThrottle()
        self._breaker: Any = None  # purgatory creates it on first use (get_breaker is a coroutine)
        self._inflight: dict[tuple[str, tuple[str, ...]], asyncio.Task] = {}
        self.coalesced = 0  # calls that waited for another caller's identical call
        self.rejected = 0  # calls refused at once because the breaker was open
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None
        self.consecutive_failures = 0
        self._probing = False  # a half-open probe is in flight: every other call fails fast until it ends

    @property
    def stats(self):
        """The inner HTTP client's counters (requests, retries, failures by kind), if it keeps them."""
        return getattr(self.inner, "stats", None)

    async def embed(self, texts: Sequence[str], kind: EmbedKind = "document") -> list[list[float]]:
        check_kind(kind)
        key = (kind, tuple(texts))
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._call(list(texts), kind))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        else:
            self.coalesced += 1
        # shield: this caller's deadline cancels its wait, not the call the other callers are waiting for
        return await asyncio.shield(task)

    async def _call(self, texts: list[str], kind: EmbedKind) -> list[list[float]]:
        if self._breaker is None:
            self._breaker = await self._breakers.get_breaker("embedding")
        if self.state != "half-opened":
            return await self._through_breaker(texts, kind)
        if self._probing:  # purgatory would let every waiting call through at once: one probe is enough
            self.rejected += 1
            raise CircuitOpen(
                "The embedding provider is being probed after repeated failures; try again in a moment.",
                retry_after=1.0,
            )
        self._probing = True
        try:
            return await self._through_breaker(texts, kind)
        finally:
            self._probing = False

    async def _through_breaker(self, texts: list[str], kind: EmbedKind) -> list[list[float]]:
        try:
            async with self._breaker:
                with retry_budget(self.retry_throttle):
                    vectors = await self.inner.embed(texts, kind=kind)
        except OpenedState:
            self.rejected += 1
            wait = self.seconds_until_probe() or 1.0
            raise CircuitOpen(
                f"The embedding provider failed {self.failure_threshold} times in a row ({self.last_error}); "
                f"the circuit breaker lets the next attempt through in {wait:.0f} s.",
                retry_after=wait,
            ) from None
        except EmbeddingError as exc:
            if not isinstance(exc, EmbeddingRequestError):
                self.last_error, self.last_error_at = f"{type(exc).__name__}: {str(exc)[:200]}", time.time()
                self.consecutive_failures += 1
            raise
        self.last_success_at = time.time()
        self.consecutive_failures = 0
        self.retry_throttle.succeeded()
        return vectors

    # -- state --------------------------------------------------------------------------------------------------------
    def _context(self):
        return self._breaker.context if self._breaker is not None else None

    @property
    def state(self) -> str:
        """closed (normal), open (failing fast) or half-opened (the next call is a probe)."""
        context = self._context()
        if context is None or context.state == "closed":
            return "closed"
        if context.state == "half-opened" or self.seconds_until_probe() == 0:
            return "half-opened"
        return "open"

    def seconds_until_probe(self) -> float | None:
        context = self._context()
        if context is None or context.state != "opened" or context.opened_at is None:
            return None
        return max(0.0, context.opened_at + self.reset_seconds - time.time())

    def health(self) -> dict[str, Any]:
        """For /healthz: ready unless the breaker is open; the last provider failure, if any."""
        report: dict[str, Any] = {
            "model": self.model_id,
            "ready": self.state != "open",
            "breaker": self.state,
            "consecutive_failures": self.consecutive_failures,
            "retries": "allowed" if self.retry_throttle.retrying else "throttled",
        }
        if self.last_error and (self.last_success_at is None or (self.last_error_at or 0) > self.last_success_at):
            report["last_error"] = self.last_error
        if (wait := self.seconds_until_probe()) is not None:
            report["retry_after"] = round(wait, 1)
        return report

    async def aclose(self) -> None:
        if hasattr(self.inner, "aclose"):
            await self.inner.aclose()
