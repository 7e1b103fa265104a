# lab-fingerprint: f585656efd3364de
# Starter code generated from solutions/objective6/__init__.py by tools/make_labs.py. This file is yours: fill in every TODO.
# `python -m checks N` (or check(N) in the notebook) grades it and gives hints.
"""Objective 6 — the semantic search service. `uvicorn solutions.objective6:app` serves the course database."""

from __future__ import annotations

from .embedding_client import EmbeddingClient  # noqa: F401
from .service import (  # noqa: F401
    CALIBRATED_MIN_SCORE,
    SEARCH_SQL,
    Metrics,
    SearchHit,
    SearchRequest,
    SearchResponse,
    SearchService,
    create_app,
    default_min_score,
    parse_filter,
    result_cache_key,
)


def __getattr__(name: str):
    # `uvicorn solutions.objective6:app` builds the app on first use, not on import (tests import the factory).
    if name == "app":
        return create_app()
    raise AttributeError(name)
