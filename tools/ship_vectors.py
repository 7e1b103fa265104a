"""Write the corpus vectors the course ships (course/vectors/, read by course.shipped_vectors) for the default model.

    python tools/ship_vectors.py                              # embed both corpora (~5 min for the manual on 2 cores)
    python tools/ship_vectors.py --from-database course_minilm   # reuse the rows a database already loaded

Run it after a change to the chunking (course.corpus) or to the model: chunks whose text changed would otherwise be
embedded on every learner's machine. tests/test_shipped_vectors.py fails when the shipped files cover too little of
the corpus built here."""

from __future__ import annotations

import argparse
import asyncio
import os

import numpy as np

from course.corpus import read_corpus
from course.embeddings import get_embedder
from course.shipped_vectors import vectors_path, write_vectors


async def _from_database(name: str, model_id: str, width: int) -> dict[str, np.ndarray]:
    os.environ["COURSE_DATABASE"] = name
    from course import database
    from course.settings import get_settings

    get_settings.cache_clear()
    conn = await database.connect()
    try:
        from pgvector.asyncpg import register_vector

        await register_vector(conn)
        rows = await conn.fetch("SELECT content, embedding FROM embeddings WHERE metadata->>'model' = $1", model_id)
    finally:
        await conn.close()
    return {r["content"]: np.asarray(r["embedding"].to_numpy(), dtype=np.float32)[:width] for r in rows}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="minilm")
    parser.add_argument("--corpus", nargs="*", default=["postgres-docs", "python-docs"])
    parser.add_argument("--from-database", help="a course database loaded with this model (COURSE_DATABASE)")
    args = parser.parse_args()
    embedder = get_embedder(args.provider)
    width = embedder.native_dimensions  # type: ignore[attr-defined]
    known = await _from_database(args.from_database, embedder.model_id, width) if args.from_database else {}
    for corpus in args.corpus:
        texts = sorted({row["content"] for row in read_corpus(corpus, limit=None)})
        todo = [t for t in texts if t not in known]
        print(f"{corpus}: {len(texts)} chunks, {len(texts) - len(todo)} from the database, embedding {len(todo)}")
        if todo:
            known.update(zip(todo, embedder.embed_native(todo)))  # type: ignore[attr-defined]
        path = vectors_path(embedder.model_id, corpus)
        write_vectors(path, embedder.model_id, texts, np.stack([known[t] for t in texts]))
        print(f"  wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    asyncio.run(main())
