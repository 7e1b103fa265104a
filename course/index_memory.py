"""The memory an HNSW build needs: maintenance_work_mem sized from the table, so a bigger table does not silently
build on disk (the runtime's index build uses it; notebook 02 §12 and `python -m bench scale` measure it)."""

from __future__ import annotations

import os
import re

import numpy as np

_UNITS = {"kB": 1024, "MB": 1024**2, "GB": 1024**3}


def memory_bytes(setting: str) -> int:
    """'512MB' -> bytes (PostgreSQL's memory units kB, MB, GB)."""
    match = re.fullmatch(r"\s*(\d+)\s*(kB|MB|GB)\s*", setting)
    if not match:
        raise ValueError(f"{setting!r} is not a memory setting like '512MB'.")
    return int(match[1]) * _UNITS[match[2]]


#: The HNSW graph's bytes per tuple for 1536-d vectors at m 16, from pgvector's notice at 64MB on the 28,988-row
#: re-chunked manual (`python -m bench scale`, notebook 02 §12): the 6,152-byte vector and ~1.1 KB of neighbour lists.
HNSW_BYTES_PER_TUPLE = 7282


def build_memory(rows: int, configured: str, ram_bytes: int | None = None) -> str:
    """The maintenance_work_mem for an HNSW build (1536-d, m 16) of `rows` rows: the configured setting, or more
    when the graph needs more, but never more than a quarter of this machine's RAM (`ram_bytes`, read if omitted) —
    beyond that, build with less (pgvector finishes on disk, slower) or make the vectors smaller (halfvec)."""
    if ram_bytes is None:
        ram_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    needed = memory_bytes(memory_for(rows, HNSW_BYTES_PER_TUPLE))
    chosen = max(memory_bytes(configured), min(needed, ram_bytes // 4))
    return f"{chosen // 1024**2}MB"


def memory_for(rows: int, bytes_per_tuple: float, headroom: float = 1.25) -> str:
    """The maintenance_work_mem that holds an HNSW graph of `rows` tuples (rounded up to 64MB), with headroom."""
    megabytes = rows * bytes_per_tuple * headroom / 1024**2
    return f"{int(np.ceil(megabytes / 64) * 64)}MB"
