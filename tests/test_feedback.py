"""Feedback that names the cause: typical learner mistakes, and the words the learner must see for each.

Each row is one mistake, applied to a learner-shaped copy of the reference (as the mutation suite does), then graded
the way a learner grades: `python -m checks N` in a checkout holding that labs/ and the course's checks/, in a fresh
process. The words must appear in what the CLI prints (the failing check's whole message and its hint), and the
words that would point away from the cause must not. A mutant id reuses that mutant's change
(tests/mutants/objectiveN.toml); the others are written here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mutants.__main__ import SOLUTIONS, Mutant, apply, load_mutants, solution_file

ROOT = Path(__file__).resolve().parent.parent

# (id, objective, find, replace, words the learner must see, words they must not see)
MISTAKES: list[tuple[str, int, str, str, list[str], list[str]]] = [
    (
        "validate_embedding hard-codes 1536",
        1,
        "    if len(values) != dimensions:",
        "    if len(values) != 1536:",
        ["`dimensions` argument", "dimensions=3"],
        [],
    ),
    (
        "json.dumps(metadata) before the insert",
        1,
        '{**d["metadata"], "model": embedder.model_id}',
        '__import__("json").dumps({**d["metadata"], "model": embedder.model_id})',
        ["stored as a JSON str", "Pass the dict itself"],
        ["AttributeError"],
    ),
    (
        "<=> for every metric",
        3,
        'OPERATORS = {"cosine": "<=>", "l2": "<->", "inner_product": "<#>"}',
        'OPERATORS = {"cosine": "<=>", "l2": "<=>", "inner_product": "<=>"}',
        ["own operator", "<-> for l2"],
        ["AssertionError: l2\n"],
    ),
    (
        "inner product without the minus sign",
        3,
        "o3-inner-product-sign",
        "",
        ["the sign is flipped", "negative* inner product"],
        ["(>=)"],
    ),
    (
        "a threshold that defeats the index shows the SQL and the plan",
        3,
        "o3-threshold-defeats-index",
        "",
        ["with a full scan, not the index", "Seq Scan", "ORDER BY"],
        [],
    ),
    (
        "ts_rank for rows that do not match",
        4,
        "ELSE 0 END AS text_rank",
        "ELSE ts_rank(to_tsvector('english', e.content), q.tsq, 32) + 0.001 END AS text_rank",
        ["does not match", "text_rank 0"],
        ["assert False"],
    ),
    (
        "Objective 5's filtered search without the iterative scan",
        5,
        "o5-search-filter-no-iterative-scan",
        "",
        ["stopped at its ef_search candidates", "hnsw.iterative_scan"],
        [],
    ),
    (
        "Objective 5's iterative scan set with SET, never restored",
        5,
        "o5-search-filter-setting-leaks",
        "",
        ["leaked", "restore it"],
        [],
    ),
]


def _mistake(name: str, objective: int, find: str, replace: str) -> Mutant:
    """The row as a mutant: a mutant's own change when `find` names one, else the row's change."""
    mutants = {m.id: m for m in load_mutants()}
    if find in mutants:
        return mutants[find]
    source = (SOLUTIONS / solution_file(objective)).read_text(encoding="utf-8")
    assert source.count(find) == 1, f"{name}: the change no longer applies to solutions/{solution_file(objective)}"
    return Mutant("feedback", objective, solution_file(objective), name, find, replace)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mistake", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_typical_mistake_is_named_in_the_feedback(mistake, tmp_path):
    name, objective, find, replace, must, must_not = mistake
    checkout = apply(_mistake(name, objective, find, replace), tmp_path)  # labs/: the reference with the mistake
    # a learner's checkout: their labs/ beside the course's checks/ and pytest's settings (asyncio mode)
    shutil.copytree(ROOT / "checks", checkout / "checks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", checkout)
    env = {**os.environ, "PYTHONPATH": str(checkout), "COURSE_TARGET": "labs"}
    result = subprocess.run(
        [sys.executable, "-m", "checks", str(objective)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    shown = result.stdout
    assert "❌" in shown, f"{name}: no check failed:\n{shown[-3000:]}"
    for words in must:
        assert words in shown, f"{name}: the learner does not see {words!r}:\n{shown[-4000:]}"
    for words in must_not:
        assert words not in shown, f"{name}: the learner sees {words!r}, which points away from the cause:\n{shown}"
