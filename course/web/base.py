"""What every search service needs beside its search: the pool (the primary, for writes) and the read path (standbys
when there are any, course.replicas), the guarded embedder, the settings and metrics, the database timeout within the
request's deadline, which models made the table's vectors, and adding a document."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import numpy as np
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from course.budgets import deadline as request_deadline
from course.budgets import time_left
from course.embeddings import Embedder, EmbeddingError
from course.settings import Settings
from course.web.errors import (
    DATABASE_ERRORS,
    DEADLINE_GRACE,
    DatabaseUnavailable,
    ModelMismatch,
    database_failure,
    error_kind,
)
from course.replicas import Reads
from course.web.metrics import Metrics

T = TypeVar("T")


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=20_000, description="The document's text (stored and embedded).")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="A JSON object stored with it: at most 8 "
        "levels, 32 entries per object or array, 2,000 characters per string, 256 keys "
        "and 16 KB in all; `model` is set by the service.",
    )


class DocumentCreated(BaseModel):
    id: str
    lsn: str | None = Field(
        None,
        description="Where the write ended in the primary's write-ahead log. Send it back as the X-Read-After-LSN "
        "header and the search reads from a copy that has replayed it (read-your-writes with read replicas).",
    )


class SearchServiceBase:
    """The plumbing of a search service (one per app); the objective's SearchService adds the search itself."""

    def __init__(self, pool: asyncpg.Pool, embedder: Embedder, settings: Settings, metrics: Metrics):
        self.pool, self.embedder, self.settings, self.metrics = pool, embedder, settings, metrics
        #: where reads go: the primary alone, unless the app gives the service its standbys (Reads(pool, standbys))
        self.reads = Reads(pool)
        self._models: tuple[float, dict[str, int]] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The primary's pool: every write, and the reads no standby takes (replacing it replaces both)."""
        return self._pool

    @pool.setter
    def pool(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        if hasattr(self, "reads"):
            self.reads.primary = pool

    async def read(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run the read-only `work(conn)` within the database timeout on a standby that can serve it (or the primary);
        a standby lost mid-read costs a retry on another node, not an error."""
        return await self.reads.run(work, within=self.db_timeout())

    def db_timeout(self) -> float:
        """SEARCH_DB_TIMEOUT, or less: what is left of the request's deadline."""
        left = time_left()
        return (
            self.settings.search_db_timeout if left is None else max(0.01, min(self.settings.search_db_timeout, left))
        )

    @contextlib.asynccontextmanager
    async def deadline(self, seconds: float) -> AsyncIterator[None]:
        """Bound everything inside by `seconds`: embedding (with retries, which stop early when they cannot finish in
        time) and the database. The hard bound is a little later, so a precise error wins the race. A failure is
        timed by kind (search_failed_seconds) and re-raised for its handler."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(seconds + DEADLINE_GRACE):
                with request_deadline(seconds):
                    yield
        except (EmbeddingError, DatabaseUnavailable, ModelMismatch, TimeoutError) as exc:
            self.metrics.failed_seconds.labels(error_kind(exc)).observe(time.perf_counter() - started)
            raise

    async def table_models(self) -> dict[str, int]:
        """Rows of `embeddings` per recorded embedding model (rows that record none are not counted), re-read at most
        every 30 s: cheap enough for every search and /healthz."""
        now = time.monotonic()
        if self._models is None or now - self._models[0] > 30:
            try:
                rows = await self.read(
                    lambda conn: conn.fetch(
                        "SELECT metadata->>'model' AS model, count(*) AS n FROM embeddings "
                        "WHERE metadata ? 'model' GROUP BY 1",
                        timeout=self.db_timeout(),
                    )
                )
            except asyncpg.UndefinedTableError:
                return {}  # no table yet: the search itself reports it
            except DATABASE_ERRORS as exc:
                raise database_failure(exc) from exc
            self._models = (now, {r["model"]: r["n"] for r in rows})
        return self._models[1]

    async def model_problem(self) -> str | None:
        """Why searching would compare vectors of different models, or None."""
        others = {m: n for m, n in (await self.table_models()).items() if m != self.embedder.model_id}
        if not others:
            return None
        found = ", ".join(f"{n:,} rows by {m}" for m, n in sorted(others.items()))
        return (
            f"The embeddings table holds vectors of another model ({found}); the service embeds queries with "
            f"{self.embedder.model_id}, and vectors of two models cannot be compared. Re-embed the corpus with "
            "the configured model (`python -m course corpus load`), or configure the model the table was made with."
        )

    def default_mode(self) -> str:
        """The ranking a search without `mode` uses (the objective's service says which); the indexes it needs must
        exist before /healthz reports ready."""
        return "vector"

    def measured_default_mode(self) -> str | None:
        """The mode measured best for this model (the objective's table), or None when nobody measured it."""
        return None

    def forget_results(self) -> None:
        """Called after a write: cached answers may now be wrong. A service with a result cache clears it here."""

    async def add_document(self, doc: DocumentIn) -> DocumentCreated:
        """Embed and store a document on the primary, then forget cached results. The answer carries the write's
        position in the WAL (read after the commit, so the commit is before it)."""
        [vector] = await self.embedder.embed([doc.content])
        try:
            async with self.pool.acquire(timeout=self.db_timeout()) as conn:
                row_id = await conn.fetchval(
                    "INSERT INTO embeddings (content, metadata, embedding) VALUES ($1, $2, $3) RETURNING id",
                    doc.content,
                    {**doc.metadata, "model": self.embedder.model_id},
                    np.asarray(vector, dtype=np.float32),
                    timeout=self.db_timeout(),
                )
                lsn = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text", timeout=self.db_timeout())
        except DATABASE_ERRORS as exc:
            raise database_failure(exc) from exc
        self.reads.wrote(lsn)
        self.forget_results()
        return DocumentCreated(id=str(row_id), lsn=lsn)


async def search_service(request: Request) -> Any:
    """The app's search service: the dependency routes ask for (`Annotated[SearchService, Depends(search_service)]`),
    which a test can replace with `app.dependency_overrides[search_service]`. (`async def`: FastAPI runs a plain
    `def` dependency in a worker thread, a thread hand-off on every request for one attribute read.)"""
    return request.app.state.service
