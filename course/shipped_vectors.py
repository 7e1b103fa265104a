"""Corpus vectors computed once and shipped with the course (course/vectors/), so that loading the corpus with a slow
model takes seconds instead of minutes on a fresh machine.

    vectors = shipped_vectors(embedder.model_id).get(text_key(chunk_text))   # the model's own (native) vector, or None

`course.table.load_corpus` takes a chunk's vector from here when this exact text was embedded by this model, and
embeds only the rest, so a manual that changed between PostgreSQL releases still loads correctly, just slower.
Vectors are stored as float16 (the model's 384 numbers, ~6.6 MB for the manual): the rounding moves a cosine
similarity by about 1e-4, far below any difference a ranking shows (tests/test_shipped_vectors.py measures it).
`python tools/ship_vectors.py` writes the files."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

VECTORS_DIR = Path(__file__).parent / "vectors"


def text_key(text: str) -> bytes:
    """The key a text's vector is stored under: the first 16 bytes of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def vectors_path(model_id: str, corpus: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", model_id).strip("-")
    return VECTORS_DIR / f"{slug}--{corpus}.npz"


@lru_cache(maxsize=4)
def shipped_vectors(model_id: str) -> dict[bytes, np.ndarray]:
    """Every shipped vector of `model_id`, by text_key(); empty when the course ships none for that model."""
    found: dict[bytes, np.ndarray] = {}
    for path in sorted(VECTORS_DIR.glob(vectors_path(model_id, "*").name)):
        with np.load(path, allow_pickle=False) as data:
            if str(data["model"]) != model_id:
                raise ValueError(f"{path} holds vectors of {data['model']}, not {model_id}: rewrite it.")
            found.update(zip((key.tobytes() for key in data["keys"]), data["vectors"]))
    return found


def write_vectors(path: Path, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
    """Store `vectors` (one row per text, the model's native width) for `texts`, float16, keyed by text_key()."""
    if len(texts) != len(vectors):
        raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
    # raw bytes, 16 per row (numpy's fixed-width bytes type would drop a key's trailing zero bytes)
    keys = np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(len(texts), 16)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, model=np.array(model_id), keys=keys, vectors=np.asarray(vectors, dtype=np.float16))
    tmp.replace(path)
    shipped_vectors.cache_clear()
