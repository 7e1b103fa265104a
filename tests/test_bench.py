"""The benchmarks still run: every `python -m bench NAME` end to end on a few hundred rows (BENCH_SMOKE=1).

Their numbers are meaningless at that size; the point is that a change to the reference or the runtime that breaks a
benchmark fails here, not months later when someone runs `make bench`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS
from course.corpus import available_corpus

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_every_benchmark_runs_on_a_small_table():
    # the quality judgments need the manual
    names = [b for b in BENCHMARKS if b != "quality" or available_corpus() == "postgres-docs"]
    env = {**os.environ, "BENCH_SMOKE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "bench", *names], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ratios = [line for line in result.stdout.splitlines() if line.startswith("RATIO")]
    assert len(ratios) >= 10, result.stdout[-3000:]
    banners = (
        "indexes on the corpus",
        "batch insert",
        "search service in-process",
        "Search quality",
        "At scale",
        "Streaming replicas",
    )
    for banner in banners:
        assert banner in result.stdout or (banner == "Search quality" and "quality" not in names), banner
    # the scale benchmark's smoke run still overflows the graph's memory (1MB), so pgvector's notice is parsed
    assert "bytes per tuple" in result.stdout, result.stdout[-3000:]
