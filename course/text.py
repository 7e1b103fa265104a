"""What PostgreSQL can store: one rule for every place text or JSON reaches the database.

PostgreSQL `text` and `jsonb` cannot hold U+0000 (asyncpg raises UntranslatableCharacterError deep inside a query),
and a lone UTF-16 surrogate (U+D800–U+DFFF, which JSON can spell as "\\ud800") is not valid UTF-8, so the driver
fails before sending. JSON numbers must be finite: `1e400` parses as infinity, which jsonb refuses. These checks run
before anything is embedded or sent, and say which field and which character; the service turns them into 422s,
the labs into ValueErrors. The course's embedders never see such text: it is refused first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

#: Bounds for a metadata (or filter) document: nesting depth, number of keys in all, and encoded size.
MAX_JSON_DEPTH = 8
MAX_JSON_KEYS = 256
MAX_JSON_BYTES = 16_384


def check_text(value: str, field: str) -> str:
    """Return `value` if PostgreSQL can store it, else raise ValueError naming the field, character and position."""
    for position, char in enumerate(value):
        code = ord(char)
        if code == 0:
            raise ValueError(
                f"{field} contains a NUL character (U+0000) at position {position}: PostgreSQL text cannot store it."
            )
        if 0xD800 <= code <= 0xDFFF:
            raise ValueError(
                f"{field} contains an unpaired surrogate (U+{code:04X}) at position {position}: "
                "it is not valid Unicode text."
            )
    return value


def check_json(
    value: Any,
    field: str,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_keys: int = MAX_JSON_KEYS,
    max_bytes: int = MAX_JSON_BYTES,
    max_items: int | None = None,
    max_string: int | None = None,
) -> Any:
    """Return `value` if it is JSON that jsonb can store within the bounds: text checked as above (keys too),
    finite numbers only, at most `max_depth` levels, `max_keys` keys and `max_bytes` bytes encoded; optionally at
    most `max_items` entries per object or array and `max_string` characters per string (an API declares these)."""
    keys = 0
    stack: list[tuple[Any, str, int]] = [(value, field, 1)]
    while stack:  # iterative, so a hostile depth cannot exhaust the Python stack
        item, path, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"{field} is nested deeper than {max_depth} levels (at {path}).")
        if isinstance(item, str):
            check_text(item, path)
            if max_string is not None and len(item) > max_string:
                raise ValueError(f"{path} is {len(item):,} characters; the limit is {max_string:,}.")
        elif isinstance(item, bool) or item is None or isinstance(item, int):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"{path} is {item}: JSON numbers must be finite.")
        elif max_items is not None and isinstance(item, (Mapping, list, tuple)) and len(item) > max_items:
            raise ValueError(f"{path} has {len(item)} entries; the limit is {max_items}.")
        elif isinstance(item, Mapping):
            keys += len(item)
            if keys > max_keys:
                raise ValueError(f"{field} has more than {max_keys} keys.")
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ValueError(f"{path} has a key that is not a string: {key!r}.")
                check_text(key, f"a key of {path}")
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        else:
            raise ValueError(f"{path} is a {type(item).__name__}, not a JSON value.")
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ValueError(f"{field} is {size:,} bytes as JSON; the limit is {max_bytes:,}.")
    return value
