"""Comparisons a notebook can say out loud: interleaved rounds, a spread, and a sentence generated from the numbers.

A notebook that prints "X is 1.7× faster" next to a table where it is 0.9× loses its reader's trust. `compare()`
takes per-round timings of two alternatives measured in interleaved rounds (a busy moment on a shared machine then
hits both alike), and says "faster" only when every round agrees, "slower" only when every round disagrees, and
otherwise that there is no reliable difference. The sentence is generated from the ratio, never written by hand.

With `COURSE_COMPARISONS=path` set (relative to the repository root), each comparison is also appended to that
JSON-lines file. `make test` runs the notebooks twice and `python -m course.experiments.measure run1.jsonl
run2.jsonl` fails if any comparison changed direction.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from course.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]

#: A ratio within ±5 % of 1 in any round is too close to call.
TOLERANCE = 0.05


@dataclass(frozen=True)
class Comparison:
    name: str
    subject: str  # "PLAIN storage"
    baseline: str  # "EXTERNAL (TOAST) storage"
    ratio: float  # median over rounds of baseline time / subject time: above 1 means the subject is faster
    low: float
    high: float
    rounds: int
    direction: str  # "faster", "slower" or "same"

    @property
    def sentence(self) -> str:
        spread = f"{self.rounds} interleaved rounds: {self.low:.2f}–{self.high:.2f}×"
        if self.direction == "faster":
            agree = f"median; every round agrees: {spread}"
            return f"{self.subject} is {self.ratio:.1f}× faster than {self.baseline} ({agree})"
        if self.direction == "slower":
            return f"{self.subject} is slower than {self.baseline} here: {1 / self.ratio:.1f}× the time ({spread})"
        return f"no reliable difference between {self.subject} and {self.baseline} here ({spread})"

    def __str__(self) -> str:
        return self.sentence


def compare(
    name: str, subject: str, subject_times: Sequence[float], baseline: str, baseline_times: Sequence[float]
) -> Comparison:
    """Compare per-round times (any unit, lower is better) of `subject` against `baseline`, round by round.

    Raises ValueError unless both have the same number (at least 3) of positive timings."""
    if len(subject_times) != len(baseline_times) or len(subject_times) < 3:
        raise ValueError("compare() needs the same number of rounds (at least 3) for both alternatives.")
    if min(*subject_times, *baseline_times) <= 0:
        raise ValueError("compare() needs positive timings.")
    ratios = [b / s for s, b in zip(subject_times, baseline_times)]
    low, high, median = min(ratios), max(ratios), statistics.median(ratios)
    # every round on one side, and the median beyond the tolerance
    direction = (
        "faster" if low > 1 and median > 1 + TOLERANCE else "slower" if high < 1 and median < 1 - TOLERANCE else "same"
    )
    result = Comparison(name, subject, baseline, median, low, high, len(ratios), direction)
    if path := get_settings().course_comparisons:
        with open(ROOT / path, "a", encoding="utf-8") as fh:  # a relative path is from the repository root
            fh.write(json.dumps(asdict(result)) + "\n")
    return result


@dataclass(frozen=True)
class PairedDifference:
    """The mean of per-query differences a − b (a relevance metric, a recall) with a 95% bootstrap interval."""

    subject: str
    baseline: str
    metric: str
    mean: float
    low: float
    high: float
    n: int

    @property
    def direction(self) -> str:
        return "higher" if self.low > 0 else "lower" if self.high < 0 else "tie"

    @property
    def sentence(self) -> str:
        spread = (
            f"mean difference {self.mean:+.3f}, 95% interval {self.low:+.3f} to {self.high:+.3f} over {self.n} queries"
        )
        if self.direction == "tie":
            return f"{self.subject} and {self.baseline} tie on {self.metric} ({spread}: the interval includes 0)"
        return f"{self.subject} has a {self.direction} {self.metric} than {self.baseline} ({spread})"

    def __str__(self) -> str:
        return self.sentence


def paired_difference(
    subject: str,
    subject_values: Sequence[float],
    baseline: str,
    baseline_values: Sequence[float],
    metric: str,
    *,
    resamples: int = 5000,
    seed: int = 0,
) -> PairedDifference:
    """Compare two methods on the same queries (value i of each is query i): the mean per-query difference and its
    95% percentile-bootstrap interval. "higher"/"lower" only when the interval excludes 0; otherwise a tie."""
    import numpy as np

    a, b = np.asarray(subject_values, dtype=float), np.asarray(baseline_values, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError("paired_difference() needs two equally long sequences (at least 2 queries).")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedDifference(subject, baseline, metric, float(diff.mean()), float(low), float(high), len(diff))


def _read(path: str | Path) -> dict[str, dict]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return {row["name"]: row for row in map(json.loads, filter(None, lines))}


def flips(*runs: dict[str, dict]) -> list[str]:
    """The comparisons that said "faster" in one run and "slower" in another (a "same" in one run is not a flip:
    the sentence then only declines to conclude)."""
    problems = []
    for name in sorted(set().union(*runs)):
        said = {run[name]["direction"] for run in runs if name in run}
        if {"faster", "slower"} <= said:
            ratios = ", ".join(f"{run[name]['ratio']:.2f}" for run in runs if name in run)
            problems.append(f"{name}: the direction changed between runs (median ratios {ratios})")
    return problems


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if len(paths) < 2:
        print("usage: python -m course.experiments.measure RUN1.jsonl RUN2.jsonl [...]", file=sys.stderr)
        return 2
    runs = [_read(p) for p in paths]
    names = sorted(set().union(*runs))
    missing = [f"{n}: missing from {p}" for n in names for p, run in zip(paths, runs) if n not in run]
    for name in names:
        print(
            f"{name:<46} "
            + "  ".join(f"{run[name]['direction']:>6} {run[name]['ratio']:6.2f}×" for run in runs if name in run)
        )
    problems = missing + flips(*runs)
    for problem in problems:
        print("FAIL", problem, file=sys.stderr)
    if not names:
        print("FAIL no comparisons were recorded", file=sys.stderr)
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
