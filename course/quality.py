"""Search quality, measured: relevance judgments nobody here tuned, and the metrics to score a ranking with them.

Judgments come from an authoritative structure inside the source documents: the PostgreSQL manual's back-of-book
index (`bookindex.html`), written by the manual's editors, maps terms to the sections that discuss them. Each index
entry with its sub-entry becomes a query ("aggregate function moving aggregate"), and the chunks of the sections it
links to are the relevant ones. Built once next to the corpus (`data/judgments-postgres-docs.jsonl`), split by a hash
of the query into a `tune` half (to choose weights on) and a `holdout` half (to report on).

A property to keep in mind when reading the numbers: index terms are the manual's own words, so these queries favour
lexical matching more than questions people type would. They are real, independent and plentiful; they are not
the whole story. So beside them: 150 natural questions (`judged/natural-postgres-docs.jsonl`), written the way
people ask — how-to and what-is questions in their own words, troubleshooting that describes a symptom, quoted
error messages, why-questions — each judged against the manual pages that answer it, split by a hash of the question
into tune and holdout. They are scored by page, as a reader of the results sees them: the distinct pages of the top
10 results, in order (hit@1, hit@5: an answer page first / among the first five; MRR@10).

Metrics (binary relevance): recall@k = relevant found in the top k / min(k, relevant), MRR@k = 1 / rank of the first
relevant result (0 if none in the top k), nDCG@k = DCG of the ranking / DCG of an ideal one.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


from course.corpus import _write_jsonl, corpus_path, read_corpus

#: Queries kept: entries whose sections map to 1..MAX_RELEVANT chunks (broader entries say little about ranking).
MAX_RELEVANT = 12
SAMPLE = 400


# ---------------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------------
def recall_at_k(ranked: Sequence, relevant: Iterable, k: int = 10) -> float:
    relevant = set(relevant)
    if not relevant:
        raise ValueError("a judged query needs at least one relevant item")
    return len(set(ranked[:k]) & relevant) / min(k, len(relevant))


def mrr_at_k(ranked: Sequence, relevant: Iterable, k: int = 10) -> float:
    relevant = set(relevant)
    return next((1.0 / rank for rank, item in enumerate(ranked[:k], start=1) if item in relevant), 0.0)


def ndcg_at_k(ranked: Sequence, relevant: Iterable, k: int = 10) -> float:
    relevant = set(relevant)
    if not relevant:
        raise ValueError("a judged query needs at least one relevant item")
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal


def evaluate(rankings: Mapping[str, Sequence], judgments: Sequence[dict], k: int = 10) -> dict[str, float]:
    """Mean recall@k, MRR@k and nDCG@k over the judged queries ({query: ranked ids})."""
    rows = [(rankings[j["query"]], j["relevant"]) for j in judgments]
    return {
        f"recall@{k}": sum(recall_at_k(r, rel, k) for r, rel in rows) / len(rows),
        f"MRR@{k}": sum(mrr_at_k(r, rel, k) for r, rel in rows) / len(rows),
        f"nDCG@{k}": sum(ndcg_at_k(r, rel, k) for r, rel in rows) / len(rows),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Judgments from the manual's back-of-book index
# ---------------------------------------------------------------------------------------------------------------------
_ENTRY = re.compile(r"<dt[^>]*>(.*?)</dt>|<dd>|</dd>", re.S)
_LINK = re.compile(r'<a class="indexterm" href="([^"#]+)(?:#[^"]*)?">(.*?)</a>', re.S)
_NUMBER = re.compile(r"^(?:[A-Z]?\d+(?:\.\d+)*\.|Appendix [A-Z]\.|Chapter \d+\.|Part [IVX]+\.)\s*")


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def index_entries(bookindex: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(query, [(page, section title)]) for every entry of the index, sub-entries as "term subterm"."""
    entries: list[tuple[str, list[tuple[str, str]]]] = []
    parents: list[str] = []
    last = ""
    for match in _ENTRY.finditer(bookindex):
        token = match.group(0)
        if token == "<dd>":
            parents.append(last)
        elif token == "</dd>":
            parents.pop() if parents else None
        else:
            body = match.group(1)
            term = _text(body.split("<a ", 1)[0]).rstrip(", ").strip()
            last = term
            links = [(page, _text(title)) for page, title in _LINK.findall(body)]
            if term and links:
                entries.append((" ".join([*filter(None, parents), term]), links))
    return entries


def _title(section: str) -> str:
    return _NUMBER.sub("", section).strip()


def build_judgments(html_dir: Path, rows: Sequence[dict]) -> list[dict]:
    """Judged queries {query, relevant: [chunk ids], split} from bookindex.html and the corpus rows."""
    by_section: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        meta = row["metadata"]
        by_section.setdefault((meta["page"], _title(meta["section"])), []).append(row["id"])
    judged, seen = [], set()
    for query, links in index_entries((html_dir / "bookindex.html").read_text(encoding="utf-8")):
        relevant = sorted({cid for page, title in links for cid in by_section.get((page, title), [])})
        key = query.lower()
        if relevant and len(relevant) <= MAX_RELEVANT and key not in seen and len(query) >= 4:
            seen.add(key)
            digest = hashlib.md5(key.encode()).hexdigest()
            judged.append(
                {
                    "query": query,
                    "relevant": relevant,
                    "split": "tune" if int(digest[-1], 16) % 2 else "holdout",
                    "order": digest,
                }
            )
    judged.sort(key=lambda j: str(j["order"]))  # a fixed, content-independent sample
    return [{k: v for k, v in j.items() if k != "order"} for j in judged[:SAMPLE]]


def judgments_path(name: str = "postgres-docs") -> Path:
    return corpus_path(name).with_name(f"judgments-{name}.jsonl")


def load_judgments(name: str = "postgres-docs", split: str | None = None) -> list[dict]:
    """The judged queries for the corpus (built on first use from the manual's index), optionally one split."""
    path = judgments_path(name)
    if not path.exists():
        if name != "postgres-docs":
            raise LookupError(f"No relevance judgments for the {name} corpus: only the PostgreSQL manual has an index.")
        html_dir = corpus_path(name).parent / "cache" / "postgresql-doc" / "usr/share/doc/postgresql-doc-15/html"
        _write_jsonl(path, build_judgments(html_dir, read_corpus(name, limit=None)))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if split is None or r["split"] == split]


# ---------------------------------------------------------------------------------------------------------------------
# Judgments from natural questions, scored by page
# ---------------------------------------------------------------------------------------------------------------------
NATURAL_QUESTIONS = Path(__file__).with_name("judged") / "natural-postgres-docs.jsonl"


def load_natural_questions(split: str | None = None) -> list[dict]:
    """The natural questions {query, kind, pages: [answer pages], split}, optionally one split (PostgreSQL manual
    only: they are judged against its pages)."""
    rows = [json.loads(line) for line in NATURAL_QUESTIONS.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if split is None or r["split"] == split]


def pages_of(results: Sequence[dict], k: int = 10) -> list[str]:
    """The distinct pages (`metadata.page`) of the top k results, in the order they first appear."""
    pages: list[str] = []
    for result in results[:k]:
        page = result["metadata"]["page"]
        if page not in pages:
            pages.append(page)
    return pages


def page_scores(pages: Sequence[str], answers: Iterable[str]) -> dict[str, float]:
    """hit@1, hit@5 and MRR@10 of one question's ranked pages against the pages that answer it."""
    answers = set(answers)
    return {
        "hit@1": float(bool(pages) and pages[0] in answers),
        "hit@5": float(any(p in answers for p in pages[:5])),
        "MRR@10": mrr_at_k(pages, answers, 10),
    }


def evaluate_pages(rankings: Mapping[str, Sequence[str]], questions: Sequence[dict]) -> dict[str, float]:
    """Mean hit@1, hit@5 and MRR@10 over the questions ({question: ranked pages})."""
    scores = [page_scores(rankings[q["query"]], q["pages"]) for q in questions]
    return {metric: sum(s[metric] for s in scores) / len(scores) for metric in ("hit@1", "hit@5", "MRR@10")}
