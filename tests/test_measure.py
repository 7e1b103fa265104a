"""course.experiments.measure: the sentence follows the numbers, and a flipped comparison between two runs fails."""

from __future__ import annotations

import json

import pytest

from course.experiments import measure


def test_faster_only_when_every_round_agrees():
    result = measure.compare("x", "B", [1.0, 1.0, 1.0], "A", [2.0, 1.8, 2.5])
    assert result.direction == "faster" and result.ratio == pytest.approx(2.0)
    assert (result.low, result.high) == (pytest.approx(1.8), pytest.approx(2.5))
    assert "B is 2.0× faster than A" in result.sentence and "3 interleaved rounds: 1.80–2.50×" in result.sentence


def test_one_disagreeing_round_makes_it_no_reliable_difference():
    result = measure.compare("x", "B", [1.0, 1.0, 1.0], "A", [2.0, 0.9, 2.5])
    assert result.direction == "same"
    assert "faster" not in result.sentence and "no reliable difference" in result.sentence


def test_slower_is_said_as_slower_never_as_a_speed_up_below_one():
    result = measure.compare("x", "B", [2.0, 3.0, 2.2], "A", [1.0, 1.0, 1.0])
    assert result.direction == "slower" and result.ratio < 1
    assert "faster" not in result.sentence and "slower" in result.sentence and "2.2× the time" in result.sentence


@pytest.mark.parametrize("subject, baseline", [([1, 1], [1, 1]), ([1, 1, 1], [1, 1]), ([1, 0, 1], [1, 1, 1])])
def test_too_few_rounds_or_bad_timings_are_refused(subject, baseline):
    with pytest.raises(ValueError):
        measure.compare("x", "B", subject, "A", baseline)


def _record(path, monkeypatch, name, subject_times):
    """compare() as a notebook run with COURSE_COMPARISONS set calls it (the settings read afresh)."""
    from course.settings import get_settings

    monkeypatch.setenv("COURSE_COMPARISONS", str(path))
    get_settings.cache_clear()
    try:
        measure.compare(name, "B", subject_times, "A", [2.0, 2.0, 2.0])
    finally:
        monkeypatch.delenv("COURSE_COMPARISONS")
        get_settings.cache_clear()


def test_two_runs_that_agree_pass_and_a_flip_fails(tmp_path, monkeypatch, capsys):
    one, two, three = tmp_path / "1.jsonl", tmp_path / "2.jsonl", tmp_path / "3.jsonl"
    _record(one, monkeypatch, "storage", [1.0, 1.0, 1.0])
    _record(two, monkeypatch, "storage", [1.1, 0.9, 1.0])
    _record(three, monkeypatch, "storage", [3.0, 3.0, 3.0])
    assert json.loads(one.read_text())["direction"] == "faster"
    assert measure.main([str(one), str(two)]) == 0
    assert measure.main([str(one), str(three)]) == 1
    assert "storage: the direction changed" in capsys.readouterr().err


def test_a_comparison_missing_from_a_run_or_no_comparisons_at_all_fails(tmp_path, monkeypatch):
    one, two = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    _record(one, monkeypatch, "storage", [1.0, 1.0, 1.0])
    two.write_text("")
    assert measure.main([str(one), str(two)]) == 1
    one.write_text("")
    assert measure.main([str(one), str(two)]) == 1


def test_paired_difference_calls_a_tie_a_tie():
    from course.experiments.measure import paired_difference

    clear = paired_difference("a", [0.9, 0.8, 0.85, 0.95, 0.9, 0.88], "b", [0.5, 0.4, 0.6, 0.5, 0.45, 0.55], "MRR")
    assert clear.direction == "higher" and clear.low > 0 and "higher MRR" in clear.sentence
    noisy = paired_difference("a", [1, 0, 1, 0, 1, 0], "b", [0, 1, 0, 1, 0, 0.9], "MRR")
    assert noisy.direction == "tie" and "tie on MRR" in noisy.sentence and noisy.low < 0 < noisy.high
    assert paired_difference("a", [0.1, 0.2, 0.1], "b", [0.5, 0.6, 0.7], "recall").direction == "lower"
    with pytest.raises(ValueError):
        paired_difference("a", [1.0], "b", [1.0, 2.0], "MRR")


def test_every_round_on_one_side_is_a_verdict():
    """Rounds of 1.05–2.51× all favour the subject: that is "faster", not "no reliable difference"."""
    from course.experiments.measure import compare

    result = compare("t", "PLAIN", [1.0, 1.0, 1.0, 1.0, 1.0], "TOAST", [1.05, 1.7, 2.51, 1.9, 1.6])
    assert result.direction == "faster", result.sentence
    assert compare("t", "x", [1.0, 1.0, 1.0], "y", [1.2, 0.98, 1.3]).direction == "same"
