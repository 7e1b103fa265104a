"""Request budgets: the time one request may take (a deadline) and the retries the whole process may make (a budget).

    with deadline(5.0):          # everything this request does shares five seconds
        time_left()              # -> seconds left, or None outside a deadline
        may_retry()              # after a failed attempt: does the process's retry budget allow another?

A deadline belongs to one request: an HTTP client cuts each attempt's timeout to `time_left()` and does not take a
wait that cannot finish in time. A retry budget belongs to the process: without one, every request retries on its own
and an outage's onset triples the calls a struggling provider gets. `RetryThrottle` is gRPC's retry throttling
(gRFC A6): each failed attempt spends a token, each success earns back a fraction, and retries are allowed only while
more than half the tokens are left — so while calls mostly succeed every failure may be retried, and once they mostly
fail each request makes about one call. A dozen lines; tenacity (which runs the retries) has no shared budget.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within this block, HTTP clients cut each attempt's timeout to the time left and give up at once rather than
    wait for a retry that could not finish in time. (The caller bounds the whole block, e.g. with asyncio.timeout.)"""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds left before the current deadline (None without one)."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


class RetryThrottle:
    """gRPC-style retry throttling: `max_tokens` tokens; a failed attempt spends one, a success earns `token_ratio`;
    a retry is allowed while more than half the tokens are left."""

    def __init__(self, max_tokens: float = 10.0, token_ratio: float = 0.1) -> None:
        if max_tokens <= 0 or token_ratio <= 0:
            raise ValueError("RetryThrottle needs max_tokens > 0 and token_ratio > 0")
        self.max_tokens, self.token_ratio = float(max_tokens), float(token_ratio)
        self.tokens = self.max_tokens
        self.refused = 0  # retries the budget refused

    def failed(self) -> bool:
        """Count a failed attempt; True if the budget allows retrying it."""
        self.tokens = max(0.0, self.tokens - 1)
        allowed = self.tokens > self.max_tokens / 2
        self.refused += not allowed
        return allowed

    def succeeded(self) -> None:
        self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)

    @property
    def retrying(self) -> bool:
        """Whether a failure now would be retried (for /healthz and metrics)."""
        return self.tokens - 1 > self.max_tokens / 2


_throttle: contextvars.ContextVar[RetryThrottle | None] = contextvars.ContextVar("retry_throttle", default=None)


@contextlib.contextmanager
def retry_budget(throttle: RetryThrottle) -> Iterator[None]:
    """Within this block, `may_retry()` spends from `throttle` (the service sets its process-wide one around each
    provider call)."""
    token = _throttle.set(throttle)
    try:
        yield
    finally:
        _throttle.reset(token)


def may_retry() -> bool:
    """Call after a failed attempt that could be retried: counts the failure against the current retry budget and
    says whether one more attempt is allowed. Always True outside a budget (a script, a notebook, a test)."""
    throttle = _throttle.get()
    return True if throttle is None else throttle.failed()
