"""course.text: the one rule for what PostgreSQL text and jsonb can store."""

from __future__ import annotations

import math

import pytest

from course.text import check_json, check_text


@pytest.mark.parametrize(
    "value, words",
    [("a\x00b", ["NUL", "U+0000", "position 1"]), ("x\ud800", ["U+D800", "position 1"]), ("\udfff", ["U+DFFF"])],
)
def test_text_postgresql_cannot_store_is_named(value, words):
    with pytest.raises(ValueError) as info:
        check_text(value, "content")
    assert all(w in str(info.value) for w in words) and str(info.value).startswith("content")


def test_ordinary_text_passes():
    text = "Grüße, 日本語, emoji 🙂, tabs\tand\nnewlines"
    assert check_text(text, "content") is text


@pytest.mark.parametrize(
    "value, fragment",
    [
        ({"a": math.nan}, "metadata.a is nan"),
        ({"a": [1, math.inf]}, "metadata.a[1] is inf"),
        ({"k\x00": 1}, "a key of metadata"),
        ({"a": {"b": "\ud800"}}, "metadata.a.b"),
        ({"a": [[[[[[[[[1]]]]]]]]]}, "deeper than 8"),
        ({f"k{i}": i for i in range(300)}, "more than 256 keys"),
        ({"a": "x" * 20_000}, "the limit is 16,384"),
        ({"a": object()}, "not a JSON value"),
    ],
)
def test_json_jsonb_cannot_store_is_named(value, fragment):
    with pytest.raises(ValueError) as info:
        check_json(value, "metadata")
    assert fragment in str(info.value)


def test_deep_nesting_does_not_exhaust_the_stack():
    value: list = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(ValueError, match="deeper"):
        check_json({"a": value}, "metadata")


def test_storable_json_passes():
    value = {"source": "docs", "n": 3, "ok": True, "none": None, "tags": ["a", "b"], "nested": {"x": 1.5}}
    assert check_json(value, "metadata") is value
