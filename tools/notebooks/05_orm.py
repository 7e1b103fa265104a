# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Objective 5 — an async ORM layer: SQLAlchemy 2 + pgvector + FastAPI
#
# Raw SQL is perfect for learning pgvector; an application wants typed models, a repository, transactions handled
# in one place and dependency injection. In `labs/objective5.py` you will write:
#
# 1. the `Embedding` model (typed `Mapped[...]` columns, the HNSW index declared on the model),
# 2. `EmbeddingRepository`: `add_embedding`, `get`, `search` (with similarity and filters), `delete_by_source`, and
#    `add_many` — one executemany, all or nothing,
# 3. FastAPI dependencies `get_session` and `get_repository` (with `Annotated` aliases) used by a small router.

# %%
# %load_ext autoreload
# %autoreload 2
from course.notebook import friendly_errors

friendly_errors()  # an error from a step still to write says which step, without a long traceback

import time
import numpy as np
import pandas as pd
import httpx
from sqlalchemy import delete, event, func, select
from course import database
from course.embeddings import get_embedder
from course.experiments.measure import compare
from course.corpus import corpus_guide
from course.target import load_objective
from checks import check

obj = load_objective(5)
guide = corpus_guide()  # a question and a topic that suit the corpus in use
url = database.scratch_database("objective5", reset=True)
raw = await database.connect(url)
await raw.execute("CREATE EXTENSION IF NOT EXISTS vector")  # the codec needs the type to exist
engine = obj.create_engine(url)
async with engine.begin() as conn:
    await conn.run_sync(obj.Base.metadata.create_all)  # the table *and* the HNSW index from the model
Session = obj.create_session_factory(engine)
embedder = get_embedder()
print(await raw.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname LIKE '%hnsw%'"))

# %% [markdown]
# ## 1. The vector column type — and pgvector-python issue #114
#
# pgvector's SQLAlchemy `Vector` type binds a vector as **text** (`'[0.0123,-0.0456,…]'`): 1,536 Python float
# formats per row. Registering pgvector's fast binary asyncpg codec does not help with that type: the codec then
# receives the already-formatted string and fails with *could not convert string to float* (pgvector-python #114).
#
# The course registers the codec on every engine connection (`create_engine()`) **and** uses `BinaryVector`, the same
# column type with the text conversion switched off, so arrays go to the codec untouched. `make bench` measures the
# difference; here is a small version:

# %%
from pgvector.sqlalchemy import Vector
from sqlalchemy import Column, MetaData, Table, Text, Uuid, insert
import uuid

vectors = np.random.default_rng(0).normal(size=(900, 1536)).astype(np.float32)
text_table = Table(
    "text_vectors",
    MetaData(),
    Column("id", Uuid, primary_key=True),
    Column("content", Text),
    Column("embedding", Vector(1536)),
)
plain_engine = obj.create_async_engine(obj.database.sqlalchemy_url(obj.database.database_name(url)))  # no codec
async with plain_engine.begin() as c:
    await c.run_sync(text_table.metadata.create_all)
await raw.execute(
    "DROP INDEX IF EXISTS embeddings_embedding_hnsw_orm_idx"
)  # bulk load first, index after (see Objective 2)
seconds = {"text": [], "binary": []}
for batch in np.array_split(vectors, 3):  # three interleaved rounds of 300 rows: the machine's mood hits both
    started = time.perf_counter()
    async with plain_engine.begin() as c:
        await c.execute(insert(text_table), [{"id": uuid.uuid4(), "content": "x", "embedding": v} for v in batch])
    seconds["text"].append(time.perf_counter() - started)
    started = time.perf_counter()
    async with Session() as session:
        await obj.EmbeddingRepository(session).add_many([{"content": "row", "embedding": v} for v in batch])
        await session.commit()
    seconds["binary"].append(time.perf_counter() - started)
await plain_engine.dispose()
text_rate, binary_rate = 900 / sum(seconds["text"]), 900 / sum(seconds["binary"])
print(f"text literals: {text_rate:,.0f} rows/s   binary (BinaryVector + codec): {binary_rate:,.0f} rows/s")
print(
    compare(
        "05 ORM insert: binary codec vs text literals",
        "BinaryVector with the codec",
        seconds["binary"],
        "text literals",
        seconds["text"],
    )
)
started = time.perf_counter()
async with engine.begin() as c:  # … and the index after the load, once, over every row (the model declares it)
    await c.run_sync(lambda sync: [index.create(sync) for index in obj.Embedding.__table__.indexes])
print(f"then the model's HNSW index over {len(vectors):,} rows: {time.perf_counter() - started:.1f} s")

# %% [markdown]
# ## 2. One statement, many rows — observed
#
# `add_many()` must send **one** executemany (`session.execute(insert(Embedding), [row, row, …])`), not a loop of
# `INSERT`s. SQLAlchemy's `before_cursor_execute` event shows what actually reaches the driver:

# %%
seen = []


@event.listens_for(engine.sync_engine, "before_cursor_execute")
def watch(conn, cursor, statement, parameters, context, executemany):
    seen.append(
        {
            "statement": statement.split("(")[0].strip(),
            "executemany": executemany,
            "parameter sets": len(parameters) if executemany else 1,
        }
    )


async with Session() as session:
    await obj.EmbeddingRepository(session).add_many(
        [
            {"content": f"batch {i}", "embedding": v, "metadata": {"source": "batch"}}
            for i, v in enumerate(vectors[:300])
        ]
    )
    await session.commit()
event.remove(engine.sync_engine, "before_cursor_execute", watch)
pd.DataFrame(seen)

# %% [markdown]
# All or nothing: one bad row (here a NaN) and nothing of the batch is written.

# %%
before = await raw.fetchval("SELECT count(*) FROM embeddings")
bad = [{"content": f"row {i}", "embedding": v} for i, v in enumerate(vectors[:50])]
bad[25]["embedding"] = np.full(1536, np.nan)
async with Session() as session:
    try:
        await obj.EmbeddingRepository(session).add_many(bad)
    except ValueError as exc:
        print("refused:", exc)
print("rows before:", before, "after:", await raw.fetchval("SELECT count(*) FROM embeddings"))

# %% [markdown]
# ## 3. Real documents, searched through the repository

# %%
from course.corpus import read_corpus

docs = read_corpus(limit=1500)
doc_vectors = await embedder.embed([d["content"] for d in docs])
async with Session() as session:
    repo = obj.EmbeddingRepository(session)
    print("deleted synthetic rows:", await repo.delete_by_source("batch"))
    await session.execute(delete(obj.Embedding))  # start clean for the demo
    await repo.add_many(
        [{"content": d["content"], "embedding": v, "metadata": d["metadata"]} for d, v in zip(docs, doc_vectors)]
    )
    await session.commit()
    topic, question, _ = guide.topic_example
    [q] = await embedder.embed([question], kind="query")
    hits = await repo.search(q, top_k=5)
    filtered = await repo.search(q, top_k=5, filters={"topic": topic})
    matching = await session.scalar(
        select(func.count()).select_from(obj.Embedding).where(obj.Embedding.metadata_.contains({"topic": topic}))
    )
print(
    f"topic = {topic}: {len(filtered)} rows of the 5 asked for ({matching} rows match). search() turns on the "
    "iterative scan for a filtered query, so an HNSW plan cannot stop short (Objective 4's trap)"
)
pd.concat(
    {
        "all": pd.DataFrame(
            [{"section": h.embedding.metadata_["section"][:40], "similarity": round(h.similarity, 3)} for h in hits]
        ),
        f"topic = {topic}": pd.DataFrame(
            [{"section": h.embedding.metadata_["section"][:40], "similarity": round(h.similarity, 3)} for h in filtered]
        ),
    },
    axis=1,
)

# %% [markdown]
# ## 4. FastAPI: dependencies you can swap
#
# `get_session` opens one session per request and commits after the handler (rolls back if it raises);
# `get_repository` builds the repository on it. The routes ask for `RepositoryDep` — so a test can replace the
# repository with `app.dependency_overrides` and never touch the database. httpx's ASGI transport calls the app
# in-process:

# %%
app = obj.create_app(engine=engine, embedder=embedder)
async with app.router.lifespan_context(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://course") as client:
        created = await client.post(
            "/documents",
            json={
                "content": "pg_restore restores a database from an archive made by pg_dump.",
                "metadata": {"source": "notes"},
            },
        )
        print(created.status_code, created.json()["id"])
        print((await client.get(f"/documents/{created.json()['id']}")).json()["content"])
        hits = (await client.post("/documents/search", json={"query": "restore a dump", "top_k": 3})).json()
        print([round(h["similarity"], 3) for h in hits])

        class EmptyRepository:
            async def get(self, document_id):
                return None

        app.dependency_overrides[obj.get_repository] = EmptyRepository
        print("with the override:", (await client.get(f"/documents/{created.json()['id']}")).status_code)
        app.dependency_overrides.clear()


# %%
check(5)

# %%
await engine.dispose()
await raw.close()
