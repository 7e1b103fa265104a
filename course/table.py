"""The `embeddings` table: its definition, the corpus loaded into it (binary COPY), its codecs, its indexes, keeping it
in memory, and copies of it for practice databases and benchmarks. (The documents themselves: course.corpus.)"""

from __future__ import annotations

import json
import logging
import uuid

from tqdm.auto import tqdm

from course.corpus import _read_all, _sample
from course.settings import EMBEDDING_DIMENSIONS, get_settings

log = logging.getLogger(__name__)

#: The `embeddings` table as Objective 1 specifies it, for the runtime's own scratch copies, checks and benchmarks.
#: (Learners write theirs in Objective 1; the reference there is the teaching copy of this statement.)
EMBEDDINGS_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS embeddings (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), content text NOT NULL, "
    "metadata jsonb NOT NULL DEFAULT '{}', embedding vector(1536) NOT NULL)"
)


async def load_corpus(
    conn,
    embedder=None,
    *,
    name: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    rows: list[dict] | None = None,
) -> int:
    """Embed the corpus into the `embeddings` table of `conn`'s database; returns the number of rows added.
    `rows` ({id, content, metadata} dicts, e.g. `course.experiments.scale.rechunked(...)`) are loaded instead of
    the corpus.

    The runtime's own loader (it does not use any learner's or the reference's Objective 1 code): the extension and
    table from `EMBEDDINGS_TABLE_DDL`, vectors checked for length and finiteness, and binary COPY of each batch in its
    own transaction (the fastest path measured: ~10K rows/s against ~8K for executemany). A chunk whose vector the
    course ships for the model (course.shipped_vectors) is looked up by the embedder, not computed. Registers pgvector's
    and a binary jsonb codec on `conn`. Re-running adds nothing; rows embedded with another model are replaced,
    because vectors from different models cannot be compared."""
    from pgvector.asyncpg import register_vector

    from course.embeddings import get_embedder

    embedder = embedder or get_embedder()
    all_rows = _read_all(name) if rows is None else rows
    rows = _sample(all_rows, limit if limit is not None else get_settings().course_corpus_limit)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await conn.execute(EMBEDDINGS_TABLE_DDL)
    await register_vector(conn)
    await binary_jsonb(conn)
    # Rows from another model are not comparable; rows whose chunk left the corpus (a rebuilt corpus) are stale.
    stale = await conn.execute(
        "DELETE FROM embeddings WHERE metadata ? 'corpus_id' "
        "AND (metadata->>'model' <> $1 OR NOT (metadata->>'corpus_id' = ANY($2::text[])))",
        embedder.model_id,
        [r["id"] for r in all_rows],
    )
    if stale != "DELETE 0":
        log.info("Removed stale corpus rows (%s)", stale)
    have = {
        r["cid"]
        for r in await conn.fetch("SELECT metadata->>'corpus_id' AS cid FROM embeddings WHERE metadata ? 'corpus_id'")
    }
    missing = [r for r in rows if r["id"] not in have]
    # Inserting into an HNSW index row by row is ~3x slower than building it afterwards (29 s vs 10 s for the corpus)
    rebuild_index = len(missing) > 1000 and await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", SEARCH_INDEX)
    if rebuild_index:
        await conn.execute(f"DROP INDEX {SEARCH_INDEX}")
    added = 0
    batch = 500
    with tqdm(
        total=len(missing),
        desc=f"Embedding with {embedder.model_id}",
        unit="chunk",
        disable=not progress or not missing,
    ) as bar:
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            vectors = _checked_vectors(await embedder.embed([r["content"] for r in chunk]), len(chunk))
            records = [
                (
                    uuid.UUID(r["id"]),
                    r["content"],
                    {**r["metadata"], "corpus_id": r["id"], "model": embedder.model_id},
                    v,
                )
                for r, v in zip(chunk, vectors)
            ]
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "embeddings", records=records, columns=["id", "content", "metadata", "embedding"]
                )
            added += len(records)
            bar.update(len(records))
    if rebuild_index:
        await ensure_search_index(conn)
    return added


async def binary_jsonb(conn) -> None:
    """COPY's binary format needs a binary jsonb codec: a version byte (1) and the JSON text. Still dicts both ways."""
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        format="binary",
        encoder=lambda value: b"\x01" + json.dumps(value).encode(),
        decoder=lambda data: json.loads(data[1:]),
    )


def _checked_vectors(vectors, count: int):
    """The embedder's vectors as a float32 matrix, refused (ValueError) unless there are `count` rows of the
    column's width, finite and not all zero: a bad batch must fail before COPY, not poison the table."""
    import numpy as np

    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.shape != (count, EMBEDDING_DIMENSIONS):
        raise ValueError(
            f"The embedder returned an array of shape {matrix.shape}, expected ({count}, {EMBEDDING_DIMENSIONS})."
        )
    if not np.isfinite(matrix).all():
        raise ValueError("The embedder returned a vector with NaN or infinite values.")
    if not np.abs(matrix).sum(axis=1).all():
        raise ValueError("The embedder returned an all-zero vector (no direction: cosine similarity is undefined).")
    return list(matrix)


#: The index the later objectives and the service search through (Objective 2 teaches how it is built).
SEARCH_INDEX = "embeddings_embedding_hnsw_cosine_idx"


async def ensure_search_index(conn) -> bool:
    """Create the HNSW cosine index on `embeddings` if missing (about 10 s for the corpus). True if it was built.

    The build's maintenance_work_mem is sized from the table (`course.index_memory.build_memory`): the session's
    setting, raised when the graph would not fit in it, so a bigger table does not silently build on disk."""
    from course.index_memory import build_memory

    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", SEARCH_INDEX)
    if not exists:
        rows = await conn.fetchval("SELECT count(*) FROM embeddings")
        memory = build_memory(rows, await conn.fetchval("SHOW maintenance_work_mem"))
        async with conn.transaction():
            await conn.execute(f"SET LOCAL maintenance_work_mem = '{memory}'")
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {SEARCH_INDEX} ON embeddings USING hnsw (embedding vector_cosine_ops) "
                "WITH (m = 16, ef_construction = 64)"
            )
    return not exists


#: The full-text index the service's default modes (rrf, hybrid) search through; Objective 4 teaches it (same name
#: and definition, so the learner's `CREATE INDEX IF NOT EXISTS` finds it there).
TEXT_INDEX = "embeddings_content_fts"


async def ensure_text_index(conn) -> bool:
    """Create the GIN full-text index on `to_tsvector('english', content)` if missing. True if it was built. Without
    it every hybrid or rrf search reads and parses every row (seconds per query on the manual)."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", TEXT_INDEX)
    if not exists:
        await conn.execute(
            f"CREATE INDEX IF NOT EXISTS {TEXT_INDEX} ON embeddings USING gin (to_tsvector('english', content))"
        )
    return not exists


async def prewarm(conn) -> int | None:
    """Read the course table, its TOAST and its indexes into shared_buffers (pg_prewarm), so the first searches after
    `course setup` are warm; the server's autoprewarm keeps them warm across restarts. Returns the blocks loaded, or
    None where the pg_prewarm extension cannot be created (a managed server without it)."""
    import asyncpg

    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    except asyncpg.PostgresError:
        return None
    return await conn.fetchval(
        """
        SELECT coalesce(sum(pg_prewarm(oid)), 0)::int FROM (
            SELECT 'embeddings'::regclass::oid AS oid
            UNION ALL SELECT reltoastrelid FROM pg_class WHERE oid = 'embeddings'::regclass AND reltoastrelid <> 0
            UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid = 'embeddings'::regclass
        ) AS relations
        """
    )


async def clone_corpus(dst, *, limit: int | None = None, storage: str | None = None) -> int:
    """Copy the course database's `embeddings` rows into the database of connection `dst` (a scratch database for
    experiments that drop indexes or change storage), with binary COPY. `storage` ('plain' or 'external') sets how
    the vector column is stored before loading. Returns the number of rows copied."""
    import io

    from course import database

    if storage not in (None, "plain", "external"):
        raise ValueError("storage must be 'plain' or 'external'.")
    await dst.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await dst.execute("DROP TABLE IF EXISTS embeddings")
    await dst.execute(EMBEDDINGS_TABLE_DDL)
    if storage:
        await dst.execute(f"ALTER TABLE embeddings ALTER COLUMN embedding SET STORAGE {storage.upper()}")
    src = await database.connect()
    try:
        buffer = io.BytesIO()
        query = "SELECT id, content, metadata, embedding FROM embeddings ORDER BY id"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        await src.copy_from_query(query, output=buffer, format="binary")
    finally:
        await src.close()
    buffer.seek(0)
    status = await dst.copy_to_table("embeddings", source=buffer, format="binary")
    await dst.execute("ANALYZE embeddings")
    return int(status.split()[-1])
