"""The search service's errors: one body shape (ErrorBody), the exceptions the service raises, and the handlers that
turn each into its status (422 / 401 / 502 / 503 + Retry-After), documented in the OpenAPI document."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from course.budgets import time_left
from course.embeddings import (
    EmbeddingError,
    EmbeddingInputTooLong,
    EmbeddingQuotaExceeded,
    EmbeddingRequestError,
    EmbeddingUnavailable,
)
from course.resilience import CircuitOpen

log = logging.getLogger("course.web")


class ErrorBody(BaseModel):
    """Every error the service returns has this shape."""

    detail: str = Field(description="What went wrong and what to do about it.")
    error: str = Field(
        description="A stable kind: validation, bad_request, unauthorized, too_large, timeout, not_found, "
        "embedding_unavailable, embedding_rejected, embedding_invalid, embedding_quota, "
        "model_mismatch, deadline, database or internal."
    )


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or dropped the connection (the API answers 503)."""


class ModelMismatch(RuntimeError):
    """The table's vectors were made by another model than the one embedding the queries (the API answers 503)."""


class WriteKeyRequired(Exception):
    """POST /documents without the right SEARCH_API_KEY (the API answers 401)."""


class InvalidRequest(ValueError):
    """A request the client can fix as told: a route raises it with the message (the API answers 422)."""


#: Errors that mean "the database is not there right now", as opposed to a bug in a query. InternalClientError is
#: asyncpg's protocol losing track when the server terminates a pooled connection mid-exchange (seen on DROP
#: DATABASE … WITH (FORCE)); the pool discards that connection.
DATABASE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InternalClientError,
)

#: The hard bound on a request is its deadline plus this: inside the deadline the embedder gives up on its own with
#: a precise error (provider down, timed out), which should win over the generic "deadline" answer.
DEADLINE_GRACE = 0.25

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}

DESCRIBED = {
    400: "The body is not JSON the service can parse.",
    401: "No API key, or a wrong one (writes need SEARCH_API_KEY when it is set).",
    404: "No such route.",
    408: "The request body stopped arriving (SEARCH_BODY_TIMEOUT).",
    413: "The request body is larger than SEARCH_MAX_BODY_BYTES.",
    414: "The URL is too long.",
    431: "The request's headers are too large.",
    422: "A parameter or the body is invalid; `detail` says which and why.",
    500: "An unexpected error (logged); never expected.",
    502: "The embedding provider refused the request or answered with something that is not embeddings "
    "(`embedding_rejected`, `embedding_invalid`), or its quota is used up (`embedding_quota`).",
    503: "The embedding provider or the database is unavailable, no answer came within the deadline, or the "
    "table holds another model's vectors (`model_mismatch`); retry after Retry-After seconds.",
}


#: What the request guard (course.web.guard) may answer on any route, before the route runs.
GUARD_STATUSES = (400, 408, 413, 414, 431)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can return (`codes` and the guard's), all with the ErrorBody
    shape."""
    codes = tuple(sorted({*GUARD_STATUSES, *codes}))
    return {
        code: {"model": ErrorBody, "description": DESCRIBED[code], **({"headers": RETRY_AFTER} if code == 503 else {})}
        for code in codes
    }


def database_failure(exc: BaseException) -> Exception:
    """What a failed database call means for the answer: a timeout once the request's deadline is (all but) spent
    is the deadline (TimeoutError, 503 `deadline`); anything else is a database that cannot be used right now
    (DatabaseUnavailable, 503 `database`)."""
    left = time_left()
    if isinstance(exc, TimeoutError) and left is not None and left <= 0.05:
        return TimeoutError("the request's deadline passed while the database was answering")
    return DatabaseUnavailable(f"{type(exc).__name__}: {exc}")


def error_kind(exc: BaseException) -> str:
    """The `error` kind the handlers answer with (for the failure-latency histogram)."""
    kinds = [
        (ModelMismatch, "model_mismatch"),
        (TimeoutError, "deadline"),
        (DatabaseUnavailable, "database"),
        (EmbeddingUnavailable, "embedding_unavailable"),
        (EmbeddingInputTooLong, "validation"),
        (EmbeddingQuotaExceeded, "embedding_quota"),
        (EmbeddingRequestError, "embedding_rejected"),
        (EmbeddingError, "embedding_invalid"),
    ]
    return next(kind for cls, kind in kinds if isinstance(exc, cls))


#: error(status, kind, message, retry_after=None, headers=None) -> the JSON response (counted in the metrics)
ErrorFactory = Callable[..., JSONResponse]


def error_factory(errors_counter) -> ErrorFactory:
    """The one way the service answers an error: the ErrorBody JSON, Retry-After when given, counted by kind."""

    def error(
        status_code: int,
        kind: str,
        message: str,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        errors_counter.labels(kind).inc()
        headers = dict(headers or {})
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, round(retry_after)))
        return JSONResponse({"detail": message, "error": kind}, status_code=status_code, headers=headers or None)

    return error


def install_handlers(app: FastAPI, error: ErrorFactory) -> None:
    """Map every exception the service can meet to its status and ErrorBody: never a traceback."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()
        )
        return error(422, "validation", problems or "invalid request")

    @app.exception_handler(InvalidRequest)
    async def invalid_input(request: Request, exc: InvalidRequest):
        return error(422, "validation", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kinds = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            408: "timeout",
            413: "too_large",
            431: "too_large",
        }
        kind = kinds.get(exc.status_code, "http")
        return error(exc.status_code, kind, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(WriteKeyRequired)
    async def unauthorized(request: Request, exc: WriteKeyRequired):
        return error(
            401,
            "unauthorized",
            "Writes need the service's API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(EmbeddingUnavailable)
    async def provider_down(request: Request, exc: EmbeddingUnavailable):
        log.warning("embedding provider unavailable: %s", exc)
        wait = exc.retry_after or 5
        why = (
            "it failed repeatedly, so the circuit breaker is not calling it"
            if isinstance(exc, CircuitOpen)
            else "it is down, rate-limiting or too slow"
        )
        return error(
            503,
            "embedding_unavailable",
            f"The embedding provider is unavailable ({why}); try again in {max(1, round(wait))} s.",
            wait,
        )

    @app.exception_handler(EmbeddingInputTooLong)
    async def input_too_long(request: Request, exc: EmbeddingInputTooLong):
        return error(422, "validation", str(exc))

    @app.exception_handler(EmbeddingQuotaExceeded)
    async def quota_exhausted(request: Request, exc: EmbeddingQuotaExceeded):
        log.error("the embedding provider's quota is exhausted: %s", exc)
        return error(
            502,
            "embedding_quota",
            "The embedding provider's quota for this service is used up; searches "
            "that need a new embedding fail until the service's owner raises it.",
        )

    @app.exception_handler(EmbeddingRequestError)
    async def provider_refused(request: Request, exc: EmbeddingRequestError):
        # the provider's own message can quote part of the key: log the status only, answer without details
        log.error("the embedding provider refused a request (HTTP %s)", exc.status_code)
        return error(
            502,
            "embedding_rejected",
            f"The embedding provider refused the request (HTTP {exc.status_code or '?'}); "
            "the service's embedding configuration needs attention.",
        )

    @app.exception_handler(EmbeddingError)
    async def provider_nonsense(request: Request, exc: EmbeddingError):
        log.error("the embedding provider's answer was unusable: %s", exc)
        return error(502, "embedding_invalid", f"The embedding provider's answer was not usable: {str(exc)[:200]}")

    @app.exception_handler(ModelMismatch)
    async def model_mismatch(request: Request, exc: ModelMismatch):
        return error(503, "model_mismatch", str(exc), 30)

    @app.exception_handler(TimeoutError)
    async def past_deadline(request: Request, exc: TimeoutError):
        return error(
            503,
            "deadline",
            "No answer within the request's deadline (the embedding provider or the "
            "database is slow); try again shortly.",
            5,
        )

    @app.exception_handler(DatabaseUnavailable)
    async def database_down(request: Request, exc: DatabaseUnavailable):
        log.warning("database unavailable: %s", exc)
        return error(503, "database", "The database is unavailable; try again shortly.", 5)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return error(500, "internal", "Internal error; it has been logged.")
