"""Objective 5 benchmark: the ORM batch insert (add_many) vs binary COPY, 10K x 1536 rows, same run.

Also times the text path that pgvector's stock SQLAlchemy type takes (vectors formatted as '[0.1,...]' strings)
on 1,000 rows, to show why the course sends vectors in binary.
"""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
from pgvector.asyncpg import register_vector
from pgvector.sqlalchemy import Vector
from sqlalchemy import Column, MetaData, Table, Text, Uuid, insert
from sqlalchemy.dialects.postgresql import JSONB

from bench.common import banner, size
from course import database
from course.table import EMBEDDINGS_TABLE_DDL
from solutions import objective5 as obj

ROWS = size(10_000, 300)


async def _fresh(conn) -> None:
    await conn.execute("DROP TABLE IF EXISTS embeddings")
    await conn.execute(EMBEDDINGS_TABLE_DDL)


async def run() -> dict[str, float]:
    banner(f"Objective 5 — batch insert of {ROWS:,} x 1536 rows: ORM add_many vs COPY")
    url = database.scratch_database("bench_orm", reset=True)
    conn = await database.connect(url)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await register_vector(conn)
    vectors = np.random.default_rng(0).normal(size=(ROWS, 1536)).astype(np.float32)
    engine = obj.create_engine(url)
    try:
        # binary COPY (asyncpg) of the same rows, metadata included: the ceiling
        await _fresh(conn)
        copy_conn = await database.connect(url)
        await register_vector(copy_conn)
        await copy_conn.set_type_codec(  # COPY needs jsonb in binary: a version byte, then the JSON text
            "jsonb",
            schema="pg_catalog",
            format="binary",
            encoder=lambda value: b"\x01" + json.dumps(value).encode(),
            decoder=lambda data: json.loads(data[1:]),
        )
        records = [(uuid.uuid4(), f"row {i}", {"i": i}, vectors[i]) for i in range(ROWS)]
        started = time.perf_counter()
        async with copy_conn.transaction():
            await copy_conn.copy_records_to_table(
                "embeddings", records=records, columns=["id", "content", "metadata", "embedding"]
            )
        copy_rate = ROWS / (time.perf_counter() - started)
        await copy_conn.close()

        # the course's ORM path: one executemany, vectors in binary
        await _fresh(conn)
        items = [{"content": f"row {i}", "embedding": vectors[i], "metadata": {"i": i}} for i in range(ROWS)]
        started = time.perf_counter()
        async with obj.create_session_factory(engine)() as session:
            await obj.EmbeddingRepository(session).add_many(items)
            await session.commit()
        orm_rate = ROWS / (time.perf_counter() - started)

        # pgvector's stock SQLAlchemy type: vectors as text literals
        await _fresh(conn)
        table = Table(
            "embeddings",
            MetaData(),
            Column("id", Uuid, primary_key=True),
            Column("content", Text),
            Column("metadata", JSONB),
            Column("embedding", Vector(1536)),
        )
        plain_engine = obj.create_async_engine(obj.database.sqlalchemy_url(obj.database.database_name(url)))
        text_rows = size(1_000, 100)
        started = time.perf_counter()
        async with plain_engine.begin() as c:
            await c.execute(
                insert(table),
                [
                    {"id": uuid.uuid4(), "content": "x", "metadata": {}, "embedding": vectors[i]}
                    for i in range(text_rows)
                ],
            )
        text_rate = text_rows / (time.perf_counter() - started)
        await plain_engine.dispose()

        print(f"binary COPY            {copy_rate:8,.0f} rows/s")
        print(f"ORM add_many (binary)  {orm_rate:8,.0f} rows/s")
        print(f"stock Vector (text)    {text_rate:8,.0f} rows/s  (1,000 rows)")
        print(f"RATIO ORM add_many / COPY: {orm_rate / copy_rate:.2f}  (goal >= 0.50)")
        print(f"RATIO ORM binary / stock text type: {orm_rate / text_rate:.1f}x")
        return {"orm_vs_copy": orm_rate / copy_rate, "binary_vs_text": orm_rate / text_rate}
    finally:
        await engine.dispose()
        await conn.close()
