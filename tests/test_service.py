"""The reference search service as `make serve` runs it: real HTTP on 127.0.0.1, the course corpus, the default
model, and the search page in headless Chromium."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from course.embeddings import get_embedder
from solutions.objective6 import create_app, default_min_score
from tests.servers import headless_chromium, uvicorn_in_thread

ON_TOPIC = [
    "How do I make a backup of my database?",
    "What does VACUUM do?",
    "How do I create an index?",
    "How do I grant privileges on a table?",
    "What is a foreign key?",
    "How do I write a trigger function?",
    "How can I store JSON documents?",
    "What isolation levels are there?",
]
OFF_TOPIC = [
    "Recipe for banana bread",
    "Who won the football world cup?",
    "Best beaches in Portugal",
    "How to knit a scarf",
]


@pytest.fixture(scope="module")
def server():
    """The reference app under uvicorn in a thread, on a free port; yields its base URL."""
    with uvicorn_in_thread(create_app()) as port:
        yield f"http://127.0.0.1:{port}"


def test_health_docs_and_metrics_over_http(server):
    health = httpx.get(f"{server}/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["database"]["rows_estimate"] > 1000
    assert httpx.get(f"{server}/docs", timeout=30).status_code == 200
    assert "# TYPE search_cache_requests_total counter" in httpx.get(f"{server}/metrics", timeout=30).text


def test_default_min_score_is_useful_with_the_default_model(server):
    """Calibration: every on-topic question finds something, off-topic questions find nothing."""
    for question in ON_TOPIC:
        body = httpx.post(f"{server}/search", json={"query": question}, timeout=30).json()
        assert body["min_score"] == default_min_score(get_embedder().model_id)
        assert body["count"] >= 1, f"no result for {question!r} at the default min_score"
    for question in OFF_TOPIC:
        body = httpx.post(f"{server}/search", json={"query": question}, timeout=30).json()
        assert body["count"] == 0, f"{question!r} should find nothing in the PostgreSQL manual: {body['results'][:1]}"


def test_filter_and_cache_over_http(server):
    params = {"top_k": 5, "filter": '{"topic": "sql"}', "min_score": 0.2}
    first = httpx.post(f"{server}/search", params=params, json={"query": "alter a table column"}, timeout=30).json()
    second = httpx.post(f"{server}/search", params=params, json={"query": "alter a table column"}, timeout=30).json()
    assert first["count"] == 5 and all(h["metadata"]["topic"] == "sql" for h in first["results"])
    assert (first["cached"], second["cached"]) == (False, True) and first["results"] == second["results"]


def test_search_page_in_headless_chromium(server, tmp_path):
    result = subprocess.run(
        headless_chromium(
            tmp_path, "--virtual-time-budget=15000", "--dump-dom", f"{server}/?q=How+do+I+create+an+index%3F&top_k=3"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = result.stdout
    assert "Search the PostgreSQL manual" in dom, result.stderr[-2000:]
    assert dom.count('class="hit"') == 3, "the page should render the 3 results the API returned"
    assert f"3 result(s), model {get_embedder().model_id}" in dom
    bad = subprocess.run(
        headless_chromium(
            tmp_path / "b", "--virtual-time-budget=15000", "--dump-dom", f"{server}/?q=vacuum&filter=%7Bbroken"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 'class="error"' in bad.stdout and "filter is not valid JSON" in bad.stdout, "errors are shown, not swallowed"
