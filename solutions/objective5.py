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

    # BEGIN SOLUTION starter
    # starter: id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # starter: content: Mapped[str] = mapped_column(Text)
    # starter: # TODO: id defaults to gen_random_uuid() on the server; content is NOT NULL; add metadata_ (JSONB column
    # starter: # "metadata", NOT NULL, default '{}') and embedding (BinaryVector(EMBEDDING_DIMENSIONS), NOT NULL);
    # starter: # declare the HNSW index in __table_args__ (postgresql_using="hnsw", postgresql_ops vector_cosine_ops,
    # starter: # postgresql_with m=16, ef_construction=64).
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, server_default=text("gen_random_uuid()"))
    content: Mapped[str] = mapped_column(Text, nullable=False)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    embedding: Mapped[np.ndarray] = mapped_column(BinaryVector(EMBEDDING_DIMENSIONS), nullable=False)

    __table_args__ = (
        Index(
            "embeddings_embedding_hnsw_orm_idx",
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": 16, "ef_construction": 64},
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
    )
    # END SOLUTION


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
        # BEGIN SOLUTION hint: validate with check_row(), add a model instance to the session, and flush so the
        #   server-generated id is known
        content, values, metadata = check_row(content, vector, metadata)
        row = Embedding(content=content, metadata_=metadata, embedding=values)
        self.session.add(row)
        await self.session.flush()
        return row
        # END SOLUTION

    async def get(self, embedding_id: uuid.UUID) -> Embedding | None:
        """The row with this id, or None."""
        # BEGIN SOLUTION hint: the session can load a row by its primary key
        return await self.session.get(Embedding, embedding_id)
        # END SOLUTION

    async def add_many(self, items: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
        """Insert many rows ({content, embedding, metadata?, id?}) with ONE executemany-style statement
        (`session.execute(insert(Embedding), [row, row, ...])`), not a loop of single inserts. All or nothing:
        every row is validated first, and the insert runs in a SAVEPOINT, so one bad row writes nothing.
        Returns the ids in input order."""
        # BEGIN SOLUTION hint: validate every row before anything runs; one ORM bulk insert (a list of dicts) inside a
        #   SAVEPOINT (session.begin_nested())
        rows: list[dict[str, Any]] = []
        fresh_ids = iter(_new_ids(len(items)))
        for i, item in enumerate(items):
            try:
                content, values, metadata = check_row(
                    item.get("content"), item.get("embedding", ()), item.get("metadata")
                )
            except ValueError as exc:
                raise ValueError(f"Row #{i}: {exc}") from exc
            rows.append(
                {
                    "id": uuid.UUID(str(item["id"])) if item.get("id") else next(fresh_ids),
                    "content": content,
                    "metadata_": metadata,
                    "embedding": values,
                }
            )
        if rows:
            async with self.session.begin_nested():
                await self.session.execute(insert(Embedding), rows)
        return [r["id"] for r in rows]
        # END SOLUTION

    async def search(
        self, query_vector: Sequence[float], top_k: int = 10, filters: Mapping[str, Any] | None = None
    ) -> list[ScoredEmbedding]:
        """The top_k rows nearest to `query_vector` by cosine distance, among rows whose metadata contains `filters`,
        best first, each with its cosine similarity: min(top_k, matching rows) of them, even when an HNSW scan
        serves the query (Objective 4's trap: the scan filters the ef_search candidates it collected)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 1000:
            raise ValueError("top_k must be an integer from 1 to 1000.")
        # BEGIN SOLUTION hint: pgvector's SQLAlchemy comparators (cosine_distance) for the ORDER BY, JSONB containment
        #   for the filters; similarity = 1 - distance. With filters, Objective 4's iterative scan for this query
        #   only (set_config(..., true), restored afterwards), and its relaxed order re-sorted
        _, values, filters = check_row("query", query_vector, filters)
        distance = Embedding.embedding.cosine_distance(values)
        stmt = select(Embedding, distance.label("distance")).order_by(distance).limit(top_k)
        if not filters:
            rows = (await self.session.execute(stmt)).all()
        else:
            stmt = stmt.where(Embedding.metadata_.contains(filters))
            setting = "hnsw.iterative_scan"
            previous = await self.session.scalar(select(func.current_setting(setting)))
            await self.session.execute(select(func.set_config(setting, "relaxed_order", True)))
            try:
                rows = (await self.session.execute(stmt)).all()
            finally:
                await self.session.execute(select(func.set_config(setting, previous, True)))
            rows = sorted(rows, key=lambda r: r[1])  # relaxed order: nearly, not exactly, by distance
        return [ScoredEmbedding(row, 1.0 - float(d)) for row, d in rows]
        # END SOLUTION

    async def delete_by_source(self, source: str) -> int:
        """Delete every row whose metadata "source" is `source`; return how many were deleted."""
        # BEGIN SOLUTION hint: an ORM DELETE whose condition is JSONB containment of the source; the result knows how
        #   many rows it deleted
        result = await self.session.execute(delete(Embedding).where(Embedding.metadata_.contains({"source": source})))
        return result.rowcount  # type: ignore[attr-defined]  # a DML statement's result is a CursorResult
        # END SOLUTION


# ---------------------------------------------------------------------------------------------------------------------
# FastAPI: dependencies and a small router
# ---------------------------------------------------------------------------------------------------------------------
async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request from `app.state.session_factory`: committed if the handler succeeds, rolled back
    if it raises."""
    # BEGIN SOLUTION hint: a dependency with yield: open a session from app.state, commit if the handler succeeded, roll
    #   back and re-raise if it raised
    async with request.app.state.session_factory() as session:
        try:
            yield session
            await session.commit()
        except Exception:
            await session.rollback()
            raise
    # END SOLUTION


async def get_repository(session: Annotated[AsyncSession, Depends(get_session)]) -> EmbeddingRepository:
    # BEGIN SOLUTION hint: wrap the request's session in the repository
    return EmbeddingRepository(session)
    # END SOLUTION


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
    # BEGIN SOLUTION hint: embed the content, store it with the model recorded, 201 with the document; a ValueError from
    #   the repository is the client's mistake (422)
    try:
        [vector] = await embedder.embed([doc.content])
        row = await repo.add_embedding(doc.content, vector, {**doc.metadata, "model": embedder.model_id})
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _out(row)
    # END SOLUTION


@router.get("/{document_id}", response_model=DocumentOut)
async def get_document(document_id: uuid.UUID, repo: RepositoryDep) -> DocumentOut:
    """The stored document, or 404."""
    # BEGIN SOLUTION hint: load through the repository; a missing document is a 404
    row = await repo.get(document_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No document {document_id}.")
    return _out(row)
    # END SOLUTION


@router.post("/search", response_model=list[SearchHit])
async def search_documents(body: SearchIn, repo: RepositoryDep, embedder: EmbedderDep) -> list[SearchHit]:
    """Embed the query and return the nearest documents with their similarity."""
    # BEGIN SOLUTION hint: embed the query (kind="query"), search through the repository with the request's top_k and
    #   filters, map each hit to SearchHit
    [vector] = await embedder.embed([body.query], kind="query")
    hits = await repo.search(vector, body.top_k, body.filters)
    return [SearchHit(**_out(h.embedding).model_dump(), similarity=h.similarity) for h in hits]
    # END SOLUTION


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
