"""course/experiments/scale.py and course/index_memory.py: the pieces of Objective 2's at-scale section that are
arithmetic and text, on real data where there is data (`python -m bench scale` in tests/test_bench.py runs the
database parts on a small table)."""

from __future__ import annotations

import pytest

from course.corpus import read_corpus
from course.experiments.scale import NO_LONGER_FITS, SMALL_CHUNK_CHARS, rechunked, recall
from course.index_memory import HNSW_BYTES_PER_TUPLE, build_memory, memory_bytes, memory_for

GB = 1024**3


def test_rechunked_rows_are_small_stable_and_keep_their_parent():
    rows = read_corpus(limit=40)
    small = rechunked(rows)
    assert len(small) > len(rows), "pieces of at most 300 characters from chunks of up to 1,000"
    assert all(len(r["content"]) <= SMALL_CHUNK_CHARS for r in small)
    assert {r["metadata"]["parent"] for r in small} == {r["id"] for r in rows}
    assert len({r["id"] for r in small}) == len(small)
    assert [r["id"] for r in rechunked(rows)] == [r["id"] for r in small], "the same rows get the same ids"
    parent = next(r for r in rows if r["id"] == small[0]["metadata"]["parent"])
    assert small[0]["metadata"]["topic"] == parent["metadata"].get("topic")


def test_memory_settings_and_the_notice():
    assert memory_bytes("512MB") == 512 * 1024**2 and memory_bytes("1GB") == GB and memory_bytes("64kB") == 65536
    with pytest.raises(ValueError, match="memory setting"):
        memory_bytes("512MB; DROP TABLE embeddings")
    notice = "hnsw graph no longer fits into maintenance_work_mem after 9216 tuples"
    assert int(NO_LONGER_FITS.search(notice)[1]) == 9216
    # 512MB holds ~73K tuples of the measured size; 100K rows need more, rounded up to 64MB with 25% headroom
    assert memory_bytes("512MB") / HNSW_BYTES_PER_TUPLE == pytest.approx(73_728, rel=0.01)
    assert memory_for(100_000, HNSW_BYTES_PER_TUPLE) == "896MB"


def test_the_course_build_memory_follows_the_table_within_a_quarter_of_ram():
    assert build_memory(8_640, "512MB", ram_bytes=16 * GB) == "512MB", "the corpus fits the configured setting"
    assert build_memory(100_000, "512MB", ram_bytes=16 * GB) == "896MB"
    assert build_memory(1_000_000, "512MB", ram_bytes=16 * GB) == "4096MB", "capped at a quarter of the RAM"
    assert build_memory(1_000_000, "512MB", ram_bytes=GB) == "512MB", "never below the configured setting"


def test_recall_counts_each_query_alike():
    assert recall([[1, 2], [3, 9]], [[1, 2], [3, 4]]) == 0.75
    assert recall([[]], [[]]) == 1.0
