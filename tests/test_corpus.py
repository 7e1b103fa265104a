"""The corpus: chunking, the manual's HTML, CPython docs, and idempotent loading."""

from __future__ import annotations

import json

import pytest

from tests.databases import temporary_connection
from course import corpus, database, table
from course.corpus import chunks_from_manual_page, split_text
from course.embeddings import HashingEmbedder, LocalEmbedder

PAGE = """<?xml version="1.0"?><html><head><title>11.2. Index Types</title></head><body>
<div class="navheader"><a href="x">Prev</a> Navigation noise</div>
<div class="sect1"><div class="titlepage"><h2 class="title">11.2. Index Types</h2></div>
<div class="toc"><dl><dt>11.2.1. B-Tree</dt></dl></div>
<p>PostgreSQL provides several index types: B-tree, Hash, GiST, SP-GiST, GIN, BRIN. Each index type uses a different
algorithm that is best suited to different types of indexable clauses.</p>
<pre class="programlisting">CREATE INDEX name ON table USING HASH (column);</pre>
<div class="sect2"><div class="titlepage"><h3 class="title">11.2.5. GIN</h3></div>
<p>GIN indexes are &ldquo;inverted indexes&rdquo; which are appropriate for data values that contain multiple component
values, such as arrays. An inverted index contains a separate entry for each component value.</p>
<div class="tip"><h3 class="title">Tip</h3><p>GIN serves jsonb containment.</p></div>
<p>Text after the tip belongs to GIN as well.</p></div></div>
<div class="navfooter">Footer noise</div></body></html>"""


def test_split_text_respects_the_limit_and_keeps_everything():
    text = "\n\n".join(["word " * 50, "x" * 2500, "Short paragraph.", "sentence. " * 150])
    pieces = split_text(text, limit=1000)
    assert all(0 < len(p) <= 1000 for p in pieces)
    assert "".join(pieces).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")


def test_manual_page_is_split_by_section_without_navigation(tmp_path):
    page = tmp_path / "indexes-types.html"
    page.write_text(PAGE)
    chunks = chunks_from_manual_page(page)
    assert [c.metadata["section"] for c in chunks] == ["11.2. Index Types", "11.2.5. GIN"]
    first, gin = chunks
    assert "USING HASH (column);" in first.content and "Navigation noise" not in first.content
    assert "B-Tree" not in first.content, "tables of contents are skipped"
    assert "“inverted indexes”" in gin.content and "Footer" not in gin.content
    assert "Tip" in gin.content and "after the tip" in gin.content, "admonitions stay inside their section"
    assert first.metadata | {"part": 0} == {
        "source": "postgres-docs",
        "topic": "indexes",
        "page": "indexes-types.html",
        "title": "11.2. Index Types",
        "section": "11.2. Index Types",
        "language": "en",
        "part": 0,
    }
    assert chunks_from_manual_page(page)[1].id == gin.id, "ids are stable across builds"


def test_python_docs_fallback_is_real_text():
    chunks = corpus.python_docs_chunks(progress=False)
    assert len(chunks) > 1000
    assert len({c.id for c in chunks}) == len(chunks)
    assert all(len(c.content) <= 1000 for c in chunks)
    assert any("asyncio" in c.metadata["page"] for c in chunks)


def test_the_built_corpus_is_about_ten_thousand_chunks():
    path = corpus.build_corpus(progress=False)
    rows = [json.loads(line) for line in path.open()]
    assert 2000 < len(rows) < 15000
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(len(r["content"]) <= 1000 and r["content"].strip() for r in rows)
    assert {"source", "topic", "page", "title", "section", "language"} <= set(rows[0]["metadata"])


async def test_loading_is_idempotent_and_replaces_another_models_rows():
    async with temporary_connection("test_corpus") as conn:
        assert await table.load_corpus(conn, HashingEmbedder(), limit=40, progress=False) == 40
        assert await table.load_corpus(conn, HashingEmbedder(), limit=40, progress=False) == 0
        assert await conn.fetchval("SELECT count(*) FROM embeddings") == 40
        # a different model: its vectors are not comparable, so the corpus rows are replaced
        assert await table.load_corpus(conn, LocalEmbedder(), limit=40, progress=False) == 40
        models = await conn.fetch("SELECT DISTINCT metadata->>'model' AS m FROM embeddings")
        assert [r["m"] for r in models] == [LocalEmbedder.model_id]


class _BrokenEmbedder(HashingEmbedder):
    """Returns a NaN in the second batch: the loader must refuse that batch before COPY and keep the first."""

    model_id = "broken-test-embedder"

    def __init__(self):
        self.calls = 0

    async def embed(self, texts, kind="document"):
        self.calls += 1
        vectors = await super().embed(texts, kind)
        if self.calls == 2:
            vectors[0] = [float("nan")] * len(vectors[0])
        return vectors


async def test_a_bad_vector_fails_its_batch_before_anything_of_it_is_written():
    async with temporary_connection("test_corpus_bad") as conn:
        with pytest.raises(ValueError, match="NaN"):
            await table.load_corpus(conn, _BrokenEmbedder(), limit=600, progress=False)
        # the first batch of 500 landed whole, the second batch not at all
        assert await conn.fetchval("SELECT count(*) FROM embeddings") == 500


def test_the_runtime_never_imports_solutions_or_labs():
    import ast
    from pathlib import Path

    for path in Path(corpus.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] in {"solutions", "labs"} for n in names), f"{path.name} imports {names}"


@pytest.mark.parametrize("name", sorted(corpus.GUIDES))
def test_each_corpus_guide_names_topics_its_corpus_has_broad_to_rare(name):
    from collections import Counter

    guide = corpus.corpus_guide(name)
    topics = Counter(json.loads(line)["metadata"]["topic"] for line in corpus.build_corpus(name, progress=False).open())
    counts = [topics[t] for t in guide.filter_topics]
    assert all(counts) and counts == sorted(counts, reverse=True), dict(zip(guide.filter_topics, counts))
    assert counts[-1] / sum(topics.values()) < 0.02, "the rarest filter must be selective enough to show the HNSW trap"
    assert topics[guide.topic_example[0]] > 0
    assert len(guide.questions) == 6 and len(guide.keyword_queries) == 6 and len(set(guide.questions)) == 6


def test_the_guide_follows_the_configured_corpus(monkeypatch):
    from course.settings import get_settings

    monkeypatch.setenv("COURSE_CORPUS", "python-docs")
    get_settings.cache_clear()
    try:
        corpus.build_corpus(progress=False)
        assert corpus.corpus_guide().name == "python-docs"
    finally:
        monkeypatch.delenv("COURSE_CORPUS")
        get_settings.cache_clear()


@pytest.mark.parametrize("name", sorted(corpus.GUIDES))
def test_every_keyword_query_of_a_guide_matches_its_corpus_in_full_text(name):
    """websearch_to_tsquery requires every word: a query that matches nothing would make the hybrid demo vector-only."""
    import psycopg

    guide = corpus.corpus_guide(name)
    rows = [json.loads(line)["content"] for line in corpus.build_corpus(name, progress=False).open()]
    with psycopg.connect(database.start(), autocommit=True) as conn:
        for query in (*guide.keyword_queries, guide.identifier_query):
            matched = conn.execute(
                "SELECT count(*) FROM unnest(%s::text[]) c "
                "WHERE to_tsvector('english', c) @@ websearch_to_tsquery('english', %s)",
                [rows, query],
            ).fetchone()[0]
            assert matched > 0, f"{query!r} matches no chunk of {name}"
