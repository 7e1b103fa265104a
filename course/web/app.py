"""The search service's app factory: the objective's search router assembled with the course's plumbing (the
request guard, error handlers, POST /documents, /healthz, /metrics, the search page, the API document and /docs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, status
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from course import database
from course.embeddings import Embedder, get_embedder
from course.budgets import deadline as request_deadline
from course.replicas import LSN_MAX_CHARS, LSN_PATTERN, Reads, read_after
from course.replicas import read_urls as read_replica_urls
from course.resilience import GuardedEmbedder
from course.settings import Settings, get_settings
from course.text import check_json, check_text
from course.web.base import DocumentCreated, DocumentIn, SearchServiceBase
from course.web.errors import (
    DEADLINE_GRACE,
    WriteKeyRequired,
    error_factory,
    error_responses,
    install_handlers,
)
from course.web.guard import Guard
from course.web.metrics import Metrics
from course.web.openapi import METADATA_LIMITS, document_input_rules, offline_docs

log = logging.getLogger("course.web")
STATIC = Path(__file__).parent / "static"


class HealthPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    ready: bool


class Health(BaseModel):
    status: str = Field(
        description="ok; degraded when searches are served but the primary does not answer (writes get 503) or a "
        "standby takes no reads; unavailable when a part is not ready."
    )
    embedder: HealthPart = Field(
        description="The model, `provider` and `chosen_by` (EMBEDDING_PROVIDER, or why it is the course's "
        "default), and the provider's state from recent calls: `breaker` closed, open or half-opened, `retries`: "
        "allowed or throttled (the process's retry budget), `last_error`, `retry_after`."
    )
    database: HealthPart = Field(
        description="Reachable, the table's estimated rows, `models`: which embedding "
        "models its rows were made with (all must be the configured one), and whether the "
        "vector index and the full-text index (hybrid and rrf modes) exist; with read replicas, `writes`: "
        "whether the primary answers."
    )
    replicas: HealthPart | None = Field(
        None,
        description="With read replicas only: each standby, whether it takes reads (reachable, replaying, at most "
        "`max_lag_seconds` behind), its replay position and lag, and how many reads it served; "
        "`reads_on_primary`: reads no standby could take.",
    )
    search: HealthPart = Field(
        description="`default_mode`: how a search without `mode` ranks, and `chosen_by`: SEARCH_MODE, or why it "
        "is the default for the model (the best holdout result of `python -m bench quality`, or no measurement)."
    )


#: Why the course's defaults are what they are, as /healthz reports them (the README's Search quality section has
#: the numbers; `python -m bench quality` measures them again).
DEFAULT_MODEL_REASON = (
    "the course's default: the local model with the best holdout result on natural questions (python -m bench quality)"
)
MEASURED_MODE_REASON = "the best holdout result for this model in python -m bench quality (the cheaper mode on a tie)"
UNMEASURED_MODE_REASON = "no measurement for this model: vector, the cheapest mode"


def model_choice(settings: Settings) -> dict[str, str]:
    """Which embedding provider the service runs and why: EMBEDDING_PROVIDER if it was set, else the default's."""
    chosen = "EMBEDDING_PROVIDER" if "embedding_provider" in settings.model_fields_set else DEFAULT_MODEL_REASON
    return {"provider": settings.embedding_provider, "chosen_by": chosen}


def mode_choice(service: SearchServiceBase) -> dict[str, str]:
    """The default ranking and why: SEARCH_MODE if set, else the objective's measured default for the model."""
    if service.settings.search_mode:
        return {"default_mode": service.default_mode(), "chosen_by": "SEARCH_MODE"}
    measured = service.measured_default_mode()
    reason = MEASURED_MODE_REASON if measured else UNMEASURED_MODE_REASON
    return {"default_mode": service.default_mode(), "chosen_by": reason}


async def release_without_reset(conn) -> None:
    """The service's connections hold no session state (planner settings only with SET LOCAL inside a transaction; no
    cursors, advisory locks, LISTEN or temporary tables: tests/test_service_contract.py proves it), so a connection
    goes back to the pool without asyncpg's reset query — one round trip less per request."""


class InvalidReadAfter(ValueError):
    """An X-Read-After-LSN header that is not a WAL position (the API answers 400)."""


async def read_after_write(
    request: Request,
    lsn: str = Header(  # str, not str | None: the document then says "a string" (None is "not sent")
        None,
        alias="X-Read-After-LSN",
        description="The `lsn` a POST /documents answered: what this request reads includes that write (from a "
        "standby that has replayed it, or from the primary). A position past the primary's means every write so far.",
        json_schema_extra={"pattern": LSN_PATTERN.pattern, "maxLength": LSN_MAX_CHARS},
    ),
) -> AsyncIterator[None]:
    """Read-your-writes, on the objective's (search) routes: the position this request's reads must see
    (course.replicas.read_after). A write this process did not know of also empties the result cache, whose entries
    may predate it."""
    if lsn is None:
        yield
        return
    lsn = lsn.strip().upper()
    if len(lsn) > LSN_MAX_CHARS or not LSN_PATTERN.match(lsn):
        raise InvalidReadAfter(
            "X-Read-After-LSN must be a WAL position like 0/16B3748 (what POST /documents answered)."
        )
    service: SearchServiceBase = request.app.state.service
    lsn, news = await service.reads.notice(lsn)
    if news:
        service.forget_results()
    token = read_after.set(lsn)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # ended in another context: that context ends with its request
            read_after.reset(token)


async def primary_reachable(service: SearchServiceBase) -> bool:
    """Whether the primary answers (so POST /documents can write)."""
    try:
        async with service.pool.acquire(timeout=1) as conn:
            await conn.fetchval("SELECT 1", timeout=1)
        return True
    except Exception:  # noqa: BLE001 — any failure means "cannot write now"
        return False


def query_embedder(settings: Settings, embedding_client: Callable[..., Embedder] | None) -> tuple[Embedder, Any]:
    """What the service embeds queries with, and a local server to stop afterwards (or None).

    With an `embedding_client` (an httpx client class for OpenAI-compatible servers: base_url, model, api_key, then
    model_id, timeout, max_retries) the local models and openai all go through it: `minilm` (the default) and `local`
    serve the course's model on 127.0.0.1 in OpenAI's wire format (course.local_openai, no key), `openai` is
    OPENAI_BASE_URL with its key. Other providers (gemini, hashing), or no client, use the course's own embedder
    (course.embeddings)."""
    from course.local_openai import LOCAL_PROVIDERS, LocalOpenAIServer

    if embedding_client is None or settings.embedding_provider not in (*LOCAL_PROVIDERS, "openai"):
        return get_embedder(settings=settings), None
    retry = {"timeout": settings.embedding_timeout, "max_retries": settings.embedding_max_retries}
    if settings.embedding_provider in LOCAL_PROVIDERS:
        server = LocalOpenAIServer(settings.embedding_provider).start()
        return embedding_client(server.base_url, server.model, None, model_id=server.model, **retry), server
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    width = {"width": settings.embedding_native_dimensions} if settings.embedding_native_dimensions else {}
    return embedding_client(settings.openai_base_url, settings.openai_embedding_model, key, **width, **retry), None


def create_service_app(
    *,
    router: APIRouter,
    service_class: Callable[..., SearchServiceBase],
    embedding_client: Callable[..., Embedder] | None = None,
    embedder: Embedder | None = None,
    database_url: str | None = None,
    read_urls: list[str] | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """The search service: `router` (the objective's POST /search) with the course's plumbing around it.
    `service_class(pool, embedder, settings, metrics)` makes the one service the routes share (app.state.service).
    Queries are embedded by `embedder` if given, else as `query_embedder()` says (through `embedding_client`, the
    objective's httpx client); the database is the course's unless `database_url` names another. Searches read from
    the standbys at `read_urls` (default: course.replicas.read_urls() for the course's database, none for another),
    else from the primary."""
    settings = settings or get_settings()
    metrics = Metrics()
    write_key = settings.search_api_key.get_secret_value() if settings.search_api_key else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own_embedder, local_server = embedder is None, None
        if write_key is None:
            log.warning(
                "SEARCH_API_KEY is not set: POST /documents accepts writes from anyone who can reach the service"
            )
        # one retry budget for the process: identical concurrent calls coalesced, a breaker after repeated failures
        inner = embedder
        if inner is None:
            inner, local_server = query_embedder(settings, embedding_client)
        app.state.embedder = GuardedEmbedder(
            inner,
            failure_threshold=settings.embedding_breaker_failures,
            reset_seconds=settings.embedding_breaker_reset,
        )
        metrics.watch(app.state.embedder)
        pool_options: dict[str, Any] = {
            "min_size": 0,
            "max_size": 10,
            "command_timeout": settings.search_db_timeout,
            "server_settings": {"hnsw.iterative_scan": "relaxed_order"},
            "reset": release_without_reset,
        }
        pool = await database.create_pool(database_url, **pool_options)
        app.state.service = service = service_class(pool, app.state.embedder, settings, metrics)
        standbys = read_urls if read_urls is not None else (read_replica_urls() if database_url is None else [])
        if standbys:
            # a pool per standby; none is opened yet (min_size 0), so a standby that is down does not stop the start
            service.reads = Reads(
                pool,
                {f"standby{n}": await database.create_pool(url, **pool_options) for n, url in enumerate(standbys, 1)},
                max_lag=settings.read_max_lag,
                read_after_wait=settings.read_after_wait,
            )
            log.info("reads go to %d standby(s), writes to the primary", len(standbys))
        await service.reads.start()
        try:
            yield
        finally:
            await service.reads.close()
            await pool.close()
            if own_embedder:
                await app.state.embedder.aclose()
            if local_server is not None:
                local_server.stop()

    app = FastAPI(
        title="Semantic search on PostgreSQL + pgvector",
        version="1.0",
        lifespan=lifespan,
        description="Objective 6 of the course: natural-language search over the PostgreSQL manual. "
        "Every error has the ErrorBody shape.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.metrics = metrics
    error = error_factory(metrics.errors)
    app.add_middleware(
        Guard,
        max_body_bytes=settings.search_max_body_bytes,
        on_error=error,
        body_timeout=settings.search_body_timeout,
        write_key=write_key,
    )
    install_handlers(app, error)

    @app.exception_handler(InvalidReadAfter)
    async def invalid_read_after(request: Request, exc: InvalidReadAfter):
        return error(400, "bad_request", str(exc))

    # the objective's routes read: each may name a write its answer must include
    app.include_router(router, dependencies=[Depends(read_after_write)])

    bearer = HTTPBearer(auto_error=False, description="SEARCH_API_KEY, as `Authorization: Bearer <key>`.")
    header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="SEARCH_API_KEY, as `X-API-Key`.")

    async def require_write_key(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer), api_key: str | None = Depends(header_key)
    ) -> None:
        given = (credentials.credentials if credentials else None) or api_key or ""
        if not secrets.compare_digest(
            given.encode("utf-8", "surrogatepass"), (write_key or "").encode()
        ):  # constant time
            raise WriteKeyRequired()

    @app.post(
        "/documents",
        status_code=status.HTTP_201_CREATED,
        tags=["documents"],
        response_model=DocumentCreated,
        responses=error_responses(*([401] if write_key else []), 422, 502, 503),
        dependencies=[Depends(require_write_key)] if write_key else [],
    )
    async def add_document(request: Request, doc: DocumentIn) -> DocumentCreated | JSONResponse:
        try:
            check_text(doc.content, "content")
            if not doc.content.strip():
                raise ValueError("content is empty (only whitespace).")
            check_json(doc.metadata, "metadata", **METADATA_LIMITS)
        except ValueError as exc:
            return error(422, "validation", str(exc))
        service: SearchServiceBase = request.app.state.service
        async with asyncio.timeout(settings.document_deadline + DEADLINE_GRACE):
            with request_deadline(settings.document_deadline):
                return await service.add_document(doc)

    @app.get(
        "/healthz",
        tags=["operations"],
        response_model=Health,
        responses={503: {"model": Health, "description": "A part is not ready (see which)."}},
    )
    async def healthz(request: Request) -> JSONResponse:
        """Readiness, cheap enough to poll: the row count is the planner's estimate, not a count(*)."""
        service: SearchServiceBase = request.app.state.service
        embedder = service.embedder
        report: dict[str, Any] = {
            "embedder": {
                **(embedder.health() if hasattr(embedder, "health") else {"model": embedder.model_id, "ready": True}),
                **model_choice(service.settings),
            },
            "search": {"ready": True, **mode_choice(service)},
        }

        async def table_facts(conn) -> tuple[int | None, list[str]]:
            rows = await conn.fetchval(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass('embeddings')", timeout=2
            )
            indexes = await conn.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'embeddings'", timeout=2)
            return rows, [r[0] for r in indexes]

        degraded = False
        try:
            # where searches read (a standby, when there are any); writes need the primary
            rows, indexes = await service.reads.run(table_facts, within=2)
            if rows is None:
                raise LookupError("the embeddings table does not exist")
            report["database"] = {
                "ready": True,
                "rows_estimate": max(int(rows), 0),
                "models": await service.table_models(),
                # without them a search reads every row: ~1 s per full-text search on the manual
                "vector_index": any("USING hnsw" in d or "USING ivfflat" in d for d in indexes),
                "text_index": any("USING gin (to_tsvector(" in d for d in indexes),
            }
            if problem := await service.model_problem():
                report["database"].update(ready=False, error="model_mismatch", detail=problem)
            elif service.default_mode() in ("hybrid", "rrf") and not report["database"]["text_index"]:
                report["database"].update(
                    ready=False,
                    error="text_index_missing",
                    detail=f"The default mode ({service.default_mode()}) ranks by full-text matches too, and the "
                    "full-text index is missing: every search would read every row. `python -m course setup` builds "
                    "it (or set SEARCH_MODE=vector).",
                )
            if service.reads.nodes:
                report["database"]["writes"] = await primary_reachable(service)
                report["replicas"] = service.reads.health()
                degraded = not report["database"]["writes"] or not all(
                    s["taking_reads"] for s in report["replicas"]["standbys"]
                )
        except Exception as exc:  # noqa: BLE001 — any failure means "not ready", reported, not raised
            log.warning("healthz: database not ready: %s", exc)
            report["database"] = {"ready": False, "error": type(exc).__name__}
        ready = all(part["ready"] for part in report.values())
        state = ("degraded" if degraded else "ok") if ready else "unavailable"
        return JSONResponse({"status": state, **report}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    document_input_rules(app, settings)
    offline_docs(app)
    return app
