"""Checks for Objective 1 — pgvector setup, the embeddings table, validated batched inserts, vector_dims()."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
from pgvector.asyncpg import register_vector

from course import database
from checks.support import RecordingEmbedder, create_table, objective
from course.embeddings import EmbeddingUnavailable

#: The objective's name in `make check` and grade reports (read from this line, not imported).
TITLE = "pgvector setup"
lab = objective(1)

DOCS = [
    {
        "content": "HNSW builds a multi-layer graph for approximate nearest neighbour search.",
        "metadata": {"source": "docs", "lang": "en"},
    },
    {"content": "IVFFlat divides vectors into lists and searches the closest ones.", "metadata": {"source": "docs"}},
    "A plain string is a document too.",
    {"content": "Cosine distance is one minus cosine similarity.", "metadata": {"source": "blog"}},
    {"content": "VACUUM reclaims storage occupied by dead tuples.", "metadata": {}},
]


async def _setup(lab, conn):
    await create_table(conn)


async def _count(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM embeddings")


@pytest.mark.hint(
    "An extension is enabled per database, safely twice with IF NOT EXISTS; its installed version is "
    "in the pg_extension catalog.",
    more="CREATE EXTENSION IF NOT EXISTS vector, then SELECT extversion FROM pg_extension WHERE extname = 'vector'.",
)
async def test_enable_extension_installs_pgvector(lab, conn):
    """enable_extension() installs pgvector and returns its version"""
    assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 0
    version = await lab.enable_extension(conn)
    installed = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    assert installed is not None, "the vector extension is not installed in the database after enable_extension()"
    assert version == installed, f"enable_extension() returned {version!r}, but the installed version is {installed!r}"
    assert await lab.enable_extension(conn) == installed, "a second call must succeed too (IF NOT EXISTS)"


@pytest.mark.hint(
    "Compare your CREATE TABLE with the docstring: every column's type (uuid, text, jsonb, vector with "
    "a width), NOT NULL, the id's and metadata's defaults, and the primary key.",
    more="id uuid PRIMARY KEY DEFAULT gen_random_uuid(); content text NOT NULL; metadata jsonb NOT NULL "
    "DEFAULT '{}'; embedding vector(1536) NOT NULL.",
)
@pytest.mark.points(2)
async def test_table_has_the_right_columns(lab, conn):
    """create_embeddings_table() creates the four columns with the right types, defaults and NOT NULL"""
    await conn.execute("CREATE EXTENSION vector")
    await lab.create_embeddings_table(conn)
    await lab.create_embeddings_table(conn)  # must be safe to run twice
    rows = await conn.fetch(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid) AS default_expr
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = 'embeddings'::regclass AND a.attnum > 0 AND NOT a.attisdropped
        """
    )
    columns = {r["attname"]: r for r in rows}
    assert set(columns) == {"id", "content", "metadata", "embedding"}, f"columns are {sorted(columns)}"
    expected = {"id": "uuid", "content": "text", "metadata": "jsonb", "embedding": "vector(1536)"}
    for name, type_ in expected.items():
        assert columns[name]["type"] == type_, f"column {name} is {columns[name]['type']}, expected {type_}"
        assert columns[name]["attnotnull"], f"column {name} must be NOT NULL"
    assert "gen_random_uuid()" in (columns["id"]["default_expr"] or ""), "id needs DEFAULT gen_random_uuid()"
    assert (columns["metadata"]["default_expr"] or "").startswith("'{}'"), "metadata needs DEFAULT '{}'"
    pk = await conn.fetchval(
        """SELECT array_agg(a.attname) FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
           WHERE i.indrelid = 'embeddings'::regclass AND i.indisprimary"""
    )
    assert pk == ["id"], f"the primary key should be (id), found {pk}"


@pytest.mark.hint(
    "Check the length against the `dimensions` argument first, then math.isfinite() on every value, then that "
    "not every value is 0."
)
async def test_validate_embedding_accepts_a_good_vector(lab):
    """validate_embedding() returns a correct vector (1536-d by default, `dimensions` otherwise) as a list of floats"""
    good = np.random.default_rng(1).normal(size=1536)
    out = lab.validate_embedding(good)
    assert isinstance(out, list) and len(out) == 1536, "return the vector as a list of 1536 floats"
    assert np.allclose(out, good), "the returned values must equal the input"
    try:
        small = lab.validate_embedding([0.5] * 3, dimensions=3)
    except ValueError as exc:
        raise AssertionError(
            f"validate_embedding([0.5, 0.5, 0.5], dimensions=3) raised ValueError({exc}): compare the length with the "
            "`dimensions` argument, not with a fixed 1536"
        ) from None
    assert small == [0.5, 0.5, 0.5], f"validate_embedding([0.5] * 3, dimensions=3) returned {small!r}"


@pytest.mark.hint("Raise ValueError (not another exception) with a message that says what is wrong.")
@pytest.mark.parametrize(
    "vector, why",
    [
        ([0.1] * 1535, "too short"),
        ([0.1] * 1537, "too long"),
        ([0.1] * 1535 + [math.nan], "NaN"),
        ([0.1] * 1535 + [math.inf], "infinity"),
        ([-math.inf] + [0.1] * 1535, "minus infinity"),
        ([0.0] * 1536, "all zeros"),
        ([], "empty"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_validate_embedding_refuses_bad_vectors(lab, vector, why):
    """validate_embedding() refuses wrong lengths, NaN, infinity and the zero vector"""
    with pytest.raises(ValueError) as info:
        lab.validate_embedding(vector)
    assert str(info.value), f"the ValueError for a {why} vector needs a message"


@pytest.mark.hint("Embed the contents, then INSERT each (content, metadata + {'model': embedder.model_id}, vector).")
@pytest.mark.points(2)
async def test_insert_documents_stores_content_metadata_and_vectors(lab, conn):
    """insert_documents() stores each document with its embedding and the model in metadata"""
    await _setup(lab, conn)
    embedder = RecordingEmbedder()
    ids = await lab.insert_documents(conn, embedder, DOCS)
    assert len(ids) == len(DOCS), f"return one id per document, got {len(ids)}"
    await register_vector(conn)
    rows = {r["id"]: r for r in await conn.fetch("SELECT id, content, metadata, embedding FROM embeddings")}
    assert len(rows) == len(DOCS), f"expected {len(DOCS)} rows, found {len(rows)}"
    expected_vectors = embedder.embed_sync([d if isinstance(d, str) else d["content"] for d in DOCS])
    for doc, doc_id, vector in zip(DOCS, ids, expected_vectors):
        row = rows.get(uuid.UUID(str(doc_id)))
        assert row is not None, f"id {doc_id} returned by insert_documents() is not in the table (ids in input order)"
        content = doc if isinstance(doc, str) else doc["content"]
        assert row["content"] == content
        meta = doc.get("metadata", {}) if isinstance(doc, dict) else {}
        assert isinstance(row["metadata"], dict), (
            f"metadata was stored as a JSON {type(row['metadata']).__name__}, not an object: {row['metadata']!r:.120}. "
            "Pass the dict itself: the connection's jsonb codec encodes it (json.dumps first stores a string)"
        )
        assert row["metadata"].get("model") == embedder.model_id, "record the embedder's model_id as metadata['model']"
        assert {k: v for k, v in row["metadata"].items() if k != "model"} == meta, "keep the document's own metadata"
        assert np.allclose(row["embedding"].to_numpy(), vector, atol=1e-6), "the stored vector must be the embedder's"


@pytest.mark.hint("Call embedder.embed() once per batch of batch_size texts, not once per text or once for all.")
async def test_insert_documents_embeds_in_batches(lab, conn):
    """insert_documents() calls the embedder once per batch"""
    await _setup(lab, conn)
    embedder = RecordingEmbedder()
    await lab.insert_documents(conn, embedder, DOCS, batch_size=2)
    sizes = [len(c) for c in embedder.calls]
    assert sizes == [2, 2, 1], f"with batch_size=2 and 5 documents expected embed calls of [2, 2, 1], got {sizes}"
    assert await _count(conn) == 5


@pytest.mark.hint(
    "All or nothing: one transaction around every batch, and every vector validated before it is sent.",
    more="async with conn.transaction(): around the loop over batches; validate_embedding(v) for each vector.",
)
@pytest.mark.points(2)
async def test_failed_batch_writes_nothing(lab, conn):
    """a provider outage or a NaN vector in a later batch leaves the table unchanged"""
    await _setup(lab, conn)
    await lab.insert_documents(conn, RecordingEmbedder(), DOCS[:1])
    assert await _count(conn) == 1, "the first, valid insert should have stored 1 row"
    with pytest.raises(EmbeddingUnavailable):
        await lab.insert_documents(conn, RecordingEmbedder(fail_on_call=2), DOCS, batch_size=2)
    assert await _count(conn) == 1, "an embedding failure in batch 2 must not leave batch 1 in the table"
    try:
        await lab.insert_documents(conn, RecordingEmbedder(nan_on_call=3), DOCS, batch_size=2)
    except ValueError:
        pass
    except Exception as exc:  # noqa: BLE001 — name the real cause: the vector was never validated
        pytest.fail(
            f"the NaN vector reached the database ({type(exc).__name__}: {exc}): validate every vector "
            "with validate_embedding() before inserting it, so the caller gets a ValueError"
        )
    else:
        pytest.fail("a NaN vector from the embedder was accepted: validate every vector before inserting it")
    assert await _count(conn) == 1, "a NaN vector must be refused and nothing of that call written"


@pytest.mark.hint("Refuse empty text before embedding anything; validate every vector before inserting it.")
async def test_bad_documents_are_refused_before_any_write(lab, conn):
    """empty text or non-object metadata raise ValueError and write nothing"""
    await _setup(lab, conn)
    await lab.insert_documents(conn, RecordingEmbedder(), DOCS[:2])
    for bad in (
        ["ok", "   "],
        [{"content": "ok", "metadata": ["not", "an", "object"]}],
        ["ok", "NUL \x00 inside"],
        [{"content": "ok", "metadata": {"a": float("nan")}}],
    ):
        embedder = RecordingEmbedder()
        with pytest.raises(ValueError):
            await lab.insert_documents(conn, embedder, bad)
        assert embedder.calls == [], "reject bad documents before calling the embedding API"
    assert await _count(conn) == 2


@pytest.mark.hint(
    "pgvector's vector_dims() measures a stored vector; group the rows by it and return {dims: count} with ints.",
    more="SELECT vector_dims(embedding), count(*) FROM embeddings GROUP BY 1",
)
async def test_count_by_dimension(lab, conn):
    """count_by_dimension() reports vector_dims() per row count"""
    await _setup(lab, conn)
    assert await lab.count_by_dimension(conn) == {}, "an empty table gives {}"
    await lab.insert_documents(conn, RecordingEmbedder(), DOCS)
    counts = await lab.count_by_dimension(conn)
    assert counts == {1536: len(DOCS)}, f"expected {{1536: {len(DOCS)}}}, got {counts}"
    assert all(isinstance(k, int) and isinstance(v, int) for k, v in counts.items())


@pytest.mark.hint("The version is a fact about the database: read it from the pg_extension catalog.")
async def test_enable_extension_reports_what_the_database_says(lab, conn):
    """enable_extension() returns the version recorded in the database, whatever it is"""
    await conn.execute("CREATE EXTENSION vector")
    await conn.execute("UPDATE pg_extension SET extversion = '0.0.0-check' WHERE extname = 'vector'")
    assert await lab.enable_extension(conn) == "0.0.0-check", (
        "enable_extension() must return the installed version as the database reports it"
    )


@pytest.mark.hint(
    "A valid vector may contain negative values, integers, and values that sum to zero; only "
    "the all-zero vector has no direction."
)
def test_validate_embedding_accepts_every_valid_vector(lab):
    """validate_embedding() accepts negative values, integers and values summing to 0"""
    balanced = [1.0, -1.0] * 768
    assert lab.validate_embedding(balanced) == balanced, "a vector whose values sum to 0 is still a direction"
    assert lab.validate_embedding([0] * 1535 + [1]) == [0.0] * 1535 + [1.0], "one non-zero value is enough"
    assert lab.validate_embedding([-3, 4], dimensions=2) == [-3.0, 4.0], "integers become floats"
    assert lab.validate_embedding([1e-30, 0.0], dimensions=2) == [1e-30, 0.0], "tiny values are still values"


@pytest.mark.hint("Ask the database: vector_dims() of each stored vector, grouped; don't assume every row is 1536.")
async def test_count_by_dimension_reads_the_stored_vectors(lab, conn):
    """count_by_dimension() counts what is stored, also vectors of other sizes"""
    await conn.execute("CREATE EXTENSION vector")
    await conn.execute(
        "CREATE TABLE embeddings (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), content text NOT NULL, "
        "metadata jsonb NOT NULL DEFAULT '{}', embedding vector NOT NULL)"
    )  # no fixed width
    await conn.execute(
        "INSERT INTO embeddings (content, embedding) VALUES ('a', '[1,2,3]'), ('b', '[4,5,6]'), ('c', '[1,2,3,4,5]')"
    )
    assert await lab.count_by_dimension(conn) == {3: 2, 5: 1}


@pytest.mark.hint(
    "One transaction around every batch: an insert the database refuses in a later batch "
    "must take the earlier batches with it."
)
async def test_database_refusal_in_a_later_batch_writes_nothing(lab, conn):
    """an id the table already has, in batch 2, leaves the table as it was"""
    await _setup(lab, conn)
    [existing] = await lab.insert_documents(conn, RecordingEmbedder(), DOCS[:1])
    docs = [{"content": f"new document {i}"} for i in range(3)] + [{"content": "duplicate", "id": str(existing)}]
    with pytest.raises(Exception):  # noqa: B017 — whatever the learner's code raises; the check is what was written
        await lab.insert_documents(conn, RecordingEmbedder(), docs, batch_size=3)
    assert await _count(conn) == 1, "the first batch was written although the second failed"


@pytest.mark.hint(
    "insert_documents() gets a plain asyncpg connection: register pgvector's codec on it yourself "
    "(register_vector), after the extension exists, before the first vector is sent."
)
async def test_insert_documents_works_on_a_plain_connection(lab, conn, db_url):
    """insert_documents() registers pgvector's codec on the plain connection it is given"""
    await _setup(lab, conn)  # the table, made (and the codec registered) on the check's own connection
    plain = await database.connect(db_url)  # a new connection: jsonb codec only, as course.database.connect() makes
    try:
        ids = await lab.insert_documents(plain, RecordingEmbedder(), DOCS[:2])
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 — shown to the learner
        raise AssertionError(
            f"insert_documents() on a new connection raised {type(exc).__name__}: {exc}. Its vectors need "
            "pgvector's codec on that connection (register_vector)"
        ) from None
    finally:
        await plain.close()
    assert len(ids) == 2 and await _count(conn) == 2


@pytest.mark.hint(
    "An embedder's answer is checked before it is trusted: as many vectors as texts, or a ValueError and "
    "nothing written (zip() would silently drop the documents that got no vector)."
)
async def test_a_provider_that_returns_too_few_vectors_writes_nothing(lab, conn):
    """insert_documents() refuses an answer with fewer vectors than texts and writes nothing"""
    await _setup(lab, conn)
    with pytest.raises(ValueError) as info:
        await lab.insert_documents(conn, RecordingEmbedder(short_on_call=2), DOCS, batch_size=2)
    assert str(info.value), "the ValueError needs a message saying the counts differ"
    count = await _count(conn)
    assert count == 0, (
        f"{count} rows were written though the embedder answered 1 vector for 2 texts in batch 2: check the count "
        "before inserting, inside the transaction"
    )
