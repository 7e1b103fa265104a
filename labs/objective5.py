# lab-fingerprint: 530fe7a23caf41c2
# Starter code generated from solutions/objective5.py by tools/make_labs.py. This file is yours: fill in every TODO.
# `python -m checks N` (or check(N) in the notebook) grades it and gives hints.
"""Objective 5 — an async SQLAlchemy 2 ORM layer for pgvector, and FastAPI dependency injection.

* `Embedding`: a typed declarative model of the `embeddings` table, HNSW index declared on the model.
* `EmbeddingRepository(session)`: add, get, search (with similarity and metadata filters), delete by source, and
  a batch insert that is one executemany, all or nothing.
* FastAPI: `get_session` / `get_repository` dependencies with `Annotated` aliases, used by a small router.

Vectors travel in pgvector's *binary* format. pgvector's stock SQLAlchemy type turns each vector into text
('[0.1,0.2,…]') before it reaches asyncpg — Python float formatting, about 400 rows/s — and registering the asyncpg
binary codec under it breaks writes (pgvector-python #114: the codec receives that string). The course pairs the
codec (registered on every engine connection) with `BinaryVector`, the same column type passing arrays through
untouched: ~10K rows/s, on par with COPY.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Annotated, Any, NamedTuple

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from pgvector.sqlalchemy.vector import VECTOR
from pydantic import BaseModel, Field
from sqlalchemy import Index, Text, Uuid, delete, event, func, insert, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from course import database
from course.embeddings import Embedder, get_embedder
from course.text import check_json, check_text

EMBEDDING_DIMENSIONS = 1536


# ---------------------------------------------------------------------------------------------------------------------
# Plumbing (given): the vector column type, the engine, the session factory
# ---------------------------------------------------------------------------------------------------------------------
class BinaryVector(VECTOR):
    """pgvector's `vector(n)` column type, sent and received in binary through the asyncpg codec that
    `create_engine()` registers. Reads come back as float32 numpy arrays."""

    cache_ok = True

    def bind_processor(self, dialect):
        return None  # hand lists / arrays to asyncpg untouched; the codec encodes them

    def result_processor(self, dialect, coltype):
        return lambda value: None if value is None else value.to_numpy()


def create_engine(url: str | None = None, **kwargs: Any) -> AsyncEngine:
    """An async engine on asyncpg (`postgresql+asyncpg://`) with the course session settings, registering
    pgvector's binary codec on each new connection. The database must already have the vector extension."""
    from pgvector.asyncpg import register_vector

    # without a URL: the course database, started if it is not running (its URL exists only then)
    sa_url = (url or database.start()).replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(sa_url, connect_args={"server_settings": database.session_settings()}, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _register_vector(dbapi_connection, _record):
        dbapi_connection.run_async(register_vector)

    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit, as an API handler needs
    return async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


# ---------------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------------
class Embedding(Base):
    """One row of `embeddings`. `metadata` is reserved by SQLAlchemy's declarative base, so the attribute is
    `metadata_`, mapped to the column "metadata". The HNSW cosine index is part of the model's table."""

    __tablename__ = "embeddings"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    content: Mapped[str] = mapped_column(Text)
    # TODO: id defaults to gen_random_uuid() on the server; content is NOT NULL; add metadata_ (JSONB column
    # "metadata", NOT NULL, default '{}') and embedding (BinaryVector(EMBEDDING_DIMENSIONS), NOT NULL);
    # declare the HNSW index in __table_args__ (postgresql_using="hnsw", postgresql_ops vector_cosine_ops,
    # postgresql_with m=16, ef_construction=64).


def _new_ids(count: int) -> list[uuid.UUID]:
    """`count` random (version 4) UUIDs from one call to the OS random source: 4x faster than uuid4() per row."""
    raw = os.urandom(16 * count)
    return [uuid.UUID(bytes=raw[i : i + 16], version=4) for i in range(0, 16 * count, 16)]


class ScoredEmbedding(NamedTuple):
    embedding: Embedding
    similarity: float  # cosine similarity, 1 - (embedding <=> query)


def check_row(content: Any, vector: Any, metadata: Any) -> tuple[str, np.ndarray, dict[str, Any]]:
    """Validate one document before it reaches the database; ValueError saying which part is wrong.
    Returns the vector as a float32 array (numpy checks 1536 values ~100x faster than a Python loop)."""
    if not isinstance(content, str) or not content.strip():
        raise ValueError("content must be non-empty text.")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a JSON object (a dict), not {type(metadata).__name__}.")
    check_text(content, "content")  # what PostgreSQL text and jsonb cannot store is refused here, not by the driver
    check_json(dict(metadata), "metadata")
    try:
        values = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"The vector must be a sequence of numbers: {exc}") from exc
    if values.shape != (EMBEDDING_DIMENSIONS,):
        raise ValueError(f"The vector has shape {values.shape}; the column needs {EMBEDDING_DIMENSIONS} numbers.")
    if not np.isfinite(values).all():
        raise ValueError("The vector contains NaN or infinity.")
    return content, values, dict(metadata)


# ---------------------------------------------------------------------------------------------------------------------
# The repository
# ---------------------------------------------------------------------------------------------------------------------
class EmbeddingRepository:
    """Data access for `embeddings` on one AsyncSession. Methods flush but do not commit: the caller (the
    `get_session` dependency, or a test) owns the transaction."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def add_embedding(
        self, content: str, vector: Sequence[float], metadata: Mapping[str, Any] | None = None
    ) -> Embedding:
        """Validate with check_row(), add one row and flush (so its server-generated id is known); return it."""
        raise NotImplementedError(
            "TODO: validate with check_row(), add a model instance to the session, and flush so the server-generated id is known"
        )

    async def get(self, embedding_id: uuid.UUID) -> Embedding | None:
        """The row with this id, or None."""
        raise NotImplementedError("TODO: the session can load a row by its primary key")

    async def add_many(self, items: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
        """Insert many rows ({content, embedding, metadata?, id?}) with ONE executemany-style statement
        (`session.execute(insert(Embedding), [row, row, ...])`), not a loop of single inserts. All or nothing:
        every row is validated first, and the insert runs in a SAVEPOINT, so one bad row writes nothing.
        Returns the ids in input order."""
        raise NotImplementedError(
            "TODO: validate every row before anything runs; one ORM bulk insert (a list of dicts) inside a SAVEPOINT (session.begin_nested())"
        )

    async def search(
        self, query_vector: Sequence[float], top_k: int = 10, filters: Mapping[str, Any] | None = None
    ) -> list[ScoredEmbedding]:
        """The top_k rows nearest to `query_vector` by cosine distance, among rows whose metadata contains `filters`,
        best first, each with its cosine similarity: min(top_k, matching rows) of them, even when an HNSW scan
        serves the query (Objective 4's trap: the scan filters the ef_search candidates it collected)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 1000:
            raise ValueError("top_k must be an integer from 1 to 1000.")
        raise NotImplementedError(
            "TODO: pgvector's SQLAlchemy comparators (cosine_distance) for the ORDER BY, JSONB containment for the filters; similarity = 1 - distance. With filters, Objective 4's iterative scan for this query only (set_config(..., true), restored afterwards), and its relaxed order re-sorted"
        )

    async def delete_by_source(self, source: str) -> int:
        """Delete every row whose metadata "source" is `source`; return how many were deleted."""
        raise NotImplementedError(
            "TODO: an ORM DELETE whose condition is JSONB containment of the source; the result knows how many rows it deleted"
        )


# ---------------------------------------------------------------------------------------------------------------------
# FastAPI: dependencies and a small router
# ---------------------------------------------------------------------------------------------------------------------
async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request from `app.state.session_factory`: committed if the handler succeeds, rolled back
    if it raises."""
    raise NotImplementedError(
        "TODO: a dependency with yield: open a session from app.state, commit if the handler succeeded, roll back and re-raise if it raised"
    )
    yield  # unreachable: keeps this function a generator like the solution


async def get_repository(session: Annotated[AsyncSession, Depends(get_session)]) -> EmbeddingRepository:
    raise NotImplementedError("TODO: wrap the request's session in the repository")


def get_request_embedder(request: Request) -> Embedder:
    return request.app.state.embedder


SessionDep = Annotated[AsyncSession, Depends(get_session)]
RepositoryDep = Annotated[EmbeddingRepository, Depends(get_repository)]
EmbedderDep = Annotated[Embedder, Depends(get_request_embedder)]


class DocumentIn(BaseModel):
    content: str = Field(min_length=1, max_length=20_000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentOut(BaseModel):
    id: uuid.UUID
    content: str
    metadata: dict[str, Any]


class SearchIn(BaseModel):
    query: str = Field(min_length=1, max_length=2_000)
    top_k: int = Field(10, ge=1, le=100)
    filters: dict[str, str | int | float | bool] | None = None


class SearchHit(DocumentOut):
    similarity: float


router = APIRouter(prefix="/documents", tags=["documents"])


def _out(row: Embedding) -> DocumentOut:
    return DocumentOut(id=row.id, content=row.content, metadata=row.metadata_)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DocumentOut)
async def add_document(doc: DocumentIn, repo: RepositoryDep, embedder: EmbedderDep) -> DocumentOut:
    """Embed the content and store it; 201 with the stored document."""
    raise NotImplementedError(
        "TODO: embed the content, store it with the model recorded, 201 with the document; a ValueError from the repository is the client's mistake (422)"
    )


@router.get("/{document_id}", response_model=DocumentOut)
async def get_document(document_id: uuid.UUID, repo: RepositoryDep) -> DocumentOut:
    """The stored document, or 404."""
    raise NotImplementedError("TODO: load through the repository; a missing document is a 404")


@router.post("/search", response_model=list[SearchHit])
async def search_documents(body: SearchIn, repo: RepositoryDep, embedder: EmbedderDep) -> list[SearchHit]:
    """Embed the query and return the nearest documents with their similarity."""
    raise NotImplementedError(
        'TODO: embed the query (kind="query"), search through the repository with the request\'s top_k and filters, map each hit to SearchHit'
    )


def create_app(engine: AsyncEngine | None = None, embedder: Embedder | None = None) -> FastAPI:
    """The documents API. The engine and embedder default to the course's; the lifespan disposes what it made."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own_engine = engine is None
        app.state.engine = engine or create_engine()
        app.state.session_factory = create_session_factory(app.state.engine)
        app.state.embedder = embedder or get_embedder()
        yield
        if own_engine:
            await app.state.engine.dispose()

    app = FastAPI(title="Objective 5 — documents", lifespan=lifespan)
    app.include_router(router)
    return app
