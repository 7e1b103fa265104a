"""Search-quality metrics on hand-made rankings, the judgments derived from the manual's index, and the rankings
each way of combining vector and text scores produces."""

from __future__ import annotations

import math

import pytest

from course import quality, ranking

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
    assert ranking.rank(CANDIDATES, "vector") == ["near", "both", "words", "far"]
    assert ranking.rank(CANDIDATES, "text") == ["words", "both"], "text ranks only rows that match the words"
    # raw scores: 0.3 · ts_rank (≤ 0.1 here) barely moves 0.7 · similarity
    assert ranking.rank(CANDIDATES, "raw", 0.7) == ["near", "both", "words", "far"]
    # on comparable scales the text signal counts: "both" is good on each
    assert ranking.rank(CANDIDATES, "hybrid", 0.5) == ["both", "words", "near", "far"]
    # RRF: words 1/(60+3) + 1/(60+1) = 0.032266 just above both 2/(60+2) = 0.032258; rows in one ranking come after
    assert ranking.rank(CANDIDATES, "rrf") == ["words", "both", "near", "far"]
    with pytest.raises(ValueError):
        ranking.rank(CANDIDATES, "bm25")


def test_the_natural_questions_are_judged_against_pages_of_the_manual():
    """At least 100 questions, of every kind, split into tune and holdout, each with answer pages that exist in the
    manual as the corpus holds it, and no question twice."""
    from collections import Counter

    from course.corpus import read_corpus

    questions = quality.load_natural_questions()
    assert len(questions) >= 100
    assert len({q["query"].lower() for q in questions}) == len(questions)
    kinds = Counter(q["kind"] for q in questions)
    assert set(kinds) == {"how-to", "what-is", "troubleshooting", "error", "why"}, kinds
    splits = Counter(q["split"] for q in questions)
    assert min(splits["tune"], splits["holdout"]) >= 0.4 * len(questions), splits
    assert quality.load_natural_questions("holdout") == [q for q in questions if q["split"] == "holdout"]
    pages = {row["metadata"]["page"] for row in read_corpus("postgres-docs", limit=None)}
    unknown = sorted({p for q in questions for p in q["pages"] if p not in pages})
    assert not unknown, f"answer pages not in the manual: {unknown}"


def test_page_level_scores_read_the_distinct_pages_in_order():
    results = [{"metadata": {"page": p}} for p in ["a.html", "a.html", "b.html", "c.html", "a.html", "d.html"]]
    assert quality.pages_of(results) == ["a.html", "b.html", "c.html", "d.html"]
    assert quality.pages_of(results, k=3) == ["a.html", "b.html"]
    assert quality.page_scores(["a.html", "b.html"], {"b.html"}) == {"hit@1": 0.0, "hit@5": 1.0, "MRR@10": 0.5}
    assert quality.page_scores([], {"b.html"}) == {"hit@1": 0.0, "hit@5": 0.0, "MRR@10": 0.0}
    far = [f"{i}.html" for i in range(5)] + ["b.html"]
    assert quality.page_scores(far, {"b.html"}) == {"hit@1": 0.0, "hit@5": 0.0, "MRR@10": pytest.approx(1 / 6)}
    questions = [{"query": "q1", "pages": ["a.html"]}, {"query": "q2", "pages": ["z.html"]}]
    assert quality.evaluate_pages({"q1": ["a.html"], "q2": ["a.html"]}, questions) == {
        "hit@1": 0.5,
        "hit@5": 0.5,
        "MRR@10": 0.5,
    }


async def test_a_candidate_is_scored_by_any_word_of_a_natural_question():
    """A question whose words do not all appear in a passage still gives the passages with some of them a text score
    (ranked by how many and how often), while the text candidates are still those that match every word."""
    import numpy as np

    from course import database
    from course.table import EMBEDDINGS_TABLE_DDL

    with database.temporary_database("anyword") as url:
        conn = await database.connect(url)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await conn.execute(EMBEDDINGS_TABLE_DDL)
            texts = [
                "An exclusion constraint stops two bookings of the same room from overlapping.",
                "Rooms can be booked.",
                "Nothing relevant here at all.",
            ]
            for i, text in enumerate(texts):
                vector = np.zeros(1536, dtype=np.float32)
                vector[i] = 1
                await conn.execute(
                    "INSERT INTO embeddings (content, metadata, embedding) VALUES ($1, '{}', $2::vector)",
                    text,
                    str(vector.tolist()),
                )
            query = np.zeros(1536, dtype=np.float32)
            query[0] = 1
            rows = await conn.fetch(
                ranking.candidates_sql(), str(query.tolist()), "how to stop overlapping room bookings in my hotel", 10
            )
        finally:
            await conn.close()
    text = {r["content"]: r["text"] for r in rows}
    assert set(text) == set(texts), "every row is among the 10 nearest"
    assert text[texts[0]] > text[texts[1]] > 0, text
    assert text[texts[2]] == 0
