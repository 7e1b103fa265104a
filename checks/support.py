"""Helpers for writing checks: the graded-module fixture and embedders that observe or sabotage calls."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from course.embeddings import EmbeddingUnavailable, HashingEmbedder
from course.target import load_objective


def objective(number: int):
    """A fixture returning the graded module for one objective: `lab = objective(1)` in a check file.
    Importing inside a fixture turns a broken lab (syntax error, bad import) into failed checks, not a crash."""

    @pytest.fixture
    def _lab(target):
        return load_objective(number, target)

    return _lab


class RecordingEmbedder(HashingEmbedder):
    """The deterministic hashing embedder, recording every call; can fail on the n-th call or poison a vector."""

    model_id = "check/recording"

    def __init__(self, *, fail_on_call: int | None = None, nan_on_call: int | None = None):
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call
        self.nan_on_call = nan_on_call

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        if self.fail_on_call == len(self.calls):
            raise EmbeddingUnavailable("simulated provider outage", retry_after=1)
        vectors = self.embed_sync(texts)
        if self.nan_on_call == len(self.calls):
            vectors[-1][0] = math.nan
        return vectors
