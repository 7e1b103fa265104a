"""The default model's corpus vectors shipped in course/vectors/: they cover the corpus built here, they are the
model's own vectors (to float16 rounding), and loading the corpus uses them instead of embedding again."""

from __future__ import annotations

import numpy as np

from course import corpus, embeddings, table
from course.embeddings import MiniLMEmbedder, get_embedder
from course.settings import get_settings
from course.shipped_vectors import shipped_vectors, text_key
from tests.databases import temporary_connection


def test_the_default_model_is_the_one_whose_vectors_ship():
    assert type(get_settings()).model_fields["embedding_provider"].default == "minilm"
    assert len(shipped_vectors(get_embedder("minilm").model_id)) > 10_000
    assert shipped_vectors(get_embedder("local").model_id) == {}, "WordLlama embeds the corpus in seconds itself"


def test_the_shipped_vectors_cover_the_corpus_built_here():
    """If this fails, the chunking or the manual changed: `python tools/ship_vectors.py` rewrites the files."""
    known = shipped_vectors(MiniLMEmbedder.model_id)
    rows = corpus.read_corpus(limit=None)
    covered = np.mean([text_key(r["content"]) in known for r in rows])
    assert covered >= 0.95, f"only {covered:.0%} of the {len(rows)} chunks have a shipped vector"


def test_shipped_vectors_are_the_models_own_to_float16_rounding():
    known = shipped_vectors(MiniLMEmbedder.model_id)
    rows = corpus.read_corpus(limit=24)
    texts = [r["content"] for r in rows if text_key(r["content"]) in known]
    live = embeddings._minilm().encode(texts)
    stored = np.stack([known[text_key(t)].astype(np.float32) for t in texts])
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    assert len(texts) >= 20
    assert ((live * stored).sum(axis=1) > 0.9999).all()
    # rankings see the same similarities: question-to-chunk cosine moves by far less than any gap a ranking shows
    question = embeddings._minilm().encode(["How do I create an index?"])[0]
    assert np.abs(stored @ question - live @ question).max() < 1e-3


async def test_loading_the_corpus_runs_the_model_only_on_what_is_not_shipped(monkeypatch):
    rows = corpus.read_corpus(limit=30)
    unshipped = {**rows[0], "id": "00000000-0000-4000-8000-000000000001", "content": "A chunk no release ships."}
    ran: list[str] = []
    encode = embeddings._MiniLM.encode
    monkeypatch.setattr(
        embeddings._MiniLM, "encode", lambda self, texts, **kw: ran.extend(texts) or encode(self, texts)
    )
    async with temporary_connection("test_shipped_vectors") as conn:
        added = await table.load_corpus(conn, MiniLMEmbedder(), rows=[*rows, unshipped], limit=None, progress=False)
        assert added == len(rows) + 1
        assert ran == [unshipped["content"]], "every shipped chunk is looked up, not run through the model"
        stored = await conn.fetch("SELECT content, embedding::text AS v FROM embeddings")
    monkeypatch.undo()
    vectors = {r["content"]: np.array(r["v"].strip("[]").split(","), dtype=np.float32) for r in stored}
    live = embeddings._minilm().encode([r["content"] for r in rows[:5]])
    for text, vector in zip([r["content"] for r in rows[:5]], live):
        assert vectors[text][: len(vector)] @ vector > 0.9999
        assert abs(np.linalg.norm(vectors[text]) - 1) < 1e-5, "stored vectors are unit length again"
