"""The service as `make serve` leaves it, measured with its defaults: on a fresh database, `make serve` builds every
index the default mode needs, and /healthz is not ready while one of them is missing."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from course import database
from course.embeddings import MiniLMEmbedder
from course.table import clone_corpus, ensure_search_index
from course.settings import Settings
from solutions.objective6 import create_app
from tests.servers import make_serve, uvicorn_in_thread

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(400)
def test_make_serve_on_a_fresh_database_serves_the_default_mode_under_load():
    """`make serve` on a database it has never seen (COURSE_DATABASE): healthz ready with both indexes, then 8 clients
    at once searching in the default mode (distinct questions: every one a cache miss) get no error."""
    name = f"course_fresh_{uuid.uuid4().hex[:8]}"
    # a fresh load of part of the corpus: the point is the indexes, not the size
    try:
        with make_serve(ROOT, COURSE_DATABASE=name, COURSE_CORPUS_LIMIT="2000") as base:
            health = httpx.get(f"{base}/healthz", timeout=30).json()
            assert health["status"] == "ok", health
            assert health["database"]["vector_index"] and health["database"]["text_index"], health
            # the defaults a user meets, and why (README: Search quality)
            assert health["embedder"]["model"] == MiniLMEmbedder.model_id, health
            assert health["embedder"]["provider"] == "minilm" and "bench quality" in health["embedder"]["chosen_by"]
            assert health["search"]["default_mode"] == "hybrid", health
            assert "best holdout result" in health["search"]["chosen_by"], health

            async def load() -> list[int]:
                async with httpx.AsyncClient(base_url=base, timeout=30) as client:

                    async def one(i: int) -> int:
                        response = await client.post("/search", json={"query": f"how do I tune query number {i}?"})
                        return response.status_code

                    statuses = []
                    for round_ in range(3):
                        statuses += await asyncio.gather(*(one(8 * round_ + i) for i in range(8)))
                    return statuses

            statuses = asyncio.run(load())
            assert statuses == [200] * 24, f"default-mode searches at concurrency 8: {statuses}"
            mode = httpx.post(f"{base}/search", json={"query": "vacuum"}, timeout=30).json()["mode"]
            assert mode == "hybrid"
    finally:
        database.drop_databases_with_prefix(name)


def test_healthz_is_not_ready_while_the_default_modes_index_is_missing():
    """A table without the full-text index: the default mode (hybrid for the default model) would read every row, so
    /healthz answers 503 and says what to run; with SEARCH_MODE=vector the same table is ready."""
    with database.temporary_database("no_text_index") as url:

        async def seed():
            conn = await database.connect(url)
            await clone_corpus(conn, limit=200)
            await ensure_search_index(conn)
            await conn.close()

        asyncio.run(seed())
        for mode, status in ((None, 503), ("vector", 200)):
            app = create_app(database_url=url, settings=Settings(_env_file=None, search_mode=mode))
            with uvicorn_in_thread(app, log_level="error") as port:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
            assert health.status_code == status, (mode, health.text)
            if status == 503:
                assert health.json()["database"]["error"] == "text_index_missing"
                assert "course setup" in health.json()["database"]["detail"]
            else:
                assert health.json()["search"] == {"ready": True, "default_mode": "vector", "chosen_by": "SEARCH_MODE"}
