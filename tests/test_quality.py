"""Search-quality metrics on hand-made rankings, the judgments derived from the manual's index, and the rankings
each way of combining vector and text scores produces."""

from __future__ import annotations

import math

import pytest

from course import quality

LOG2 = math.log2


def test_recall_counts_relevant_in_the_top_k_out_of_what_could_fit():
    assert quality.recall_at_k(["a", "x", "b"], {"a", "b"}, k=10) == 1.0
    assert quality.recall_at_k(["x", "y", "a"], {"a", "b"}, k=2) == 0.0
    assert quality.recall_at_k(list("abcdefghijkl"), set("abcdefghijkl"), k=10) == 1.0  # 10 of 12: all that fit


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_result():
    assert quality.mrr_at_k(["x", "a", "b"], {"a", "b"}) == 0.5
    assert quality.mrr_at_k(["x"] * 10 + ["a"], {"a"}) == 0.0, "beyond k counts nothing"


def test_ndcg_discounts_by_rank_and_is_one_for_an_ideal_ranking():
    assert quality.ndcg_at_k(["a", "b", "x"], {"a", "b"}) == 1.0
    expected = (1 / LOG2(3)) / (1 / LOG2(2) + 1 / LOG2(3))
    assert quality.ndcg_at_k(["x", "a", "y"], {"a", "b"}) == pytest.approx(expected)
    with pytest.raises(ValueError):
        quality.ndcg_at_k(["a"], set())


def test_index_entries_keep_the_parent_term_of_a_sub_entry():
    page = (
        '<dl><dt id="x">aggregate function, <a class="indexterm" href="xaggr.html">User-Defined Aggregates</a></dt>'
        '<dd><dl><dt>moving aggregate, <a class="indexterm" href="xaggr.html#XAGGR-MOVING">Moving-Aggregate Mode</a>'
        '</dt></dl></dd><dt>AIX, <a class="indexterm" href="installation.html#AIX">AIX &amp; more</a></dt></dl>'
    )
    assert quality.index_entries(page) == [
        ("aggregate function", [("xaggr.html", "User-Defined Aggregates")]),
        ("aggregate function moving aggregate", [("xaggr.html", "Moving-Aggregate Mode")]),
        ("AIX", [("installation.html", "AIX & more")]),
    ]


def test_the_judgments_map_index_terms_to_chunks_of_the_linked_sections():
    judged = quality.load_judgments()
    assert len(judged) == quality.SAMPLE
    splits = {j["split"] for j in judged}
    assert splits == {"tune", "holdout"} and 0.35 < sum(j["split"] == "tune" for j in judged) / len(judged) < 0.65
    assert all(1 <= len(j["relevant"]) <= quality.MAX_RELEVANT for j in judged)
    from course.corpus import read_corpus

    chunks = {r["id"]: r for r in read_corpus("postgres-docs", limit=None)}
    entry = next(j for j in judged if j["query"] == "dense_rank")
    assert all(chunks[c]["metadata"]["page"] == "functions-window.html" for c in entry["relevant"])


CANDIDATES = [  # one query's pool: similarity and ts_rank of each row
    {"id": "near", "vector": 0.80, "text": 0.00},
    {"id": "both", "vector": 0.70, "text": 0.05},
    {"id": "words", "vector": 0.40, "text": 0.09},
    {"id": "far", "vector": 0.30, "text": 0.00},
]


def test_rankings_from_one_candidate_pool():
    assert quality.rank(CANDIDATES, "vector") == ["near", "both", "words", "far"]
    assert quality.rank(CANDIDATES, "text") == ["words", "both"], "text ranks only rows that match the words"
    # raw scores: 0.3 · ts_rank (≤ 0.1 here) barely moves 0.7 · similarity
    assert quality.rank(CANDIDATES, "hybrid", 0.7) == ["near", "both", "words", "far"]
    # on comparable scales the text signal counts: "both" is good on each
    assert quality.rank(CANDIDATES, "normalized", 0.5) == ["both", "words", "near", "far"]
    # RRF: words 1/(60+3) + 1/(60+1) = 0.032266 just above both 2/(60+2) = 0.032258; rows in one ranking come after
    assert quality.rank(CANDIDATES, "rrf") == ["words", "both", "near", "far"]
    with pytest.raises(ValueError):
        quality.rank(CANDIDATES, "bm25")
