"""What changes when the table grows, measured at a bounded scale (notebook 02's optional section, `python -m bench
scale`).

* More, smaller rows: the manual re-chunked at ~300 characters (`rechunked`): about three times the rows, all real
  text, embedded by the course's model.
* A larger table: perturbed copies of the corpus vectors (`grow`), a stand-in for 100K rows nobody has to embed.
  The copies stay near their originals (cosine ~0.9), so they are plausible neighbours, not noise.
* HNSW build memory (`build_hnsw`): pgvector builds the graph in `maintenance_work_mem`. When it stops fitting,
  pgvector says so in a NOTICE naming the tuple count, and the rest of the build is much slower. The bytes per tuple
  measured from that notice size the setting for a table (`memory_for`), instead of a constant.
* Partitioning by a metadata key (`partition_by_topic`): one HNSW index per partition, so a search filtered on the
  key reads one small graph (the planner prunes the other partitions) instead of filtering one big graph.

Queries are timed one per transaction with `SET LOCAL` settings and custom plans (`timed_ids`), and every timing
names the plan node that served it (`plan_of`).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Sequence

import numpy as np

from course.corpus import split_text
from course.table import binary_jsonb
from course.index_memory import memory_bytes

#: The small chunks' size limit, in characters (the course corpus uses 1,000).
SMALL_CHUNK_CHARS = 300
_NAMESPACE = uuid.UUID("5f0c8a52-5d3f-4c51-9a47-7c2e3a0b9e11")

#: Every query planned for its own parameters, as EXPLAIN plans it: a prepared statement run more than five times may
#: switch to a generic plan, which can differ from the plan EXPLAIN shows (and make "what served it" untrue).
CUSTOM_PLANS = {"plan_cache_mode": "force_custom_plan"}


def rechunked(rows: Sequence[dict], limit: int = SMALL_CHUNK_CHARS) -> list[dict]:
    """The corpus rows split again into pieces of at most `limit` characters (paragraphs, then sentences, then
    words), each with its parent's metadata, the parent's id and a stable id of its own."""
    out = []
    for row in rows:
        for part, piece in enumerate(split_text(row["content"], limit)):
            out.append(
                {
                    "id": str(uuid.uuid5(_NAMESPACE, f"{row['id']}|{limit}|{part}")),
                    "content": piece,
                    "metadata": {**row["metadata"], "parent": row["id"], "small_part": part},
                }
            )
    return out


async def grow(conn, total: int, *, cosine: float = 0.9, seed: int = 0, batch: int = 5000) -> int:
    """Add perturbed copies of the `embeddings` rows until the table holds `total` rows; returns the rows added.

    Each copy is a random original plus Gaussian noise on the model's own dimensions (the zero padding stays zero),
    normalised, at about `cosine` to its original. Needs pgvector's codec on `conn`."""
    if not 0 < cosine < 1:
        raise ValueError("cosine must be between 0 and 1.")
    await binary_jsonb(conn)
    originals = await conn.fetch("SELECT id, content, metadata, embedding FROM embeddings ORDER BY id")
    have = len(originals)
    if have == 0:
        raise ValueError("grow() copies existing rows: load the corpus first.")
    matrix = np.stack([np.asarray(_array(r["embedding"]), dtype=np.float32) for r in originals])
    used = matrix != 0
    # |noise|^2 = dims * sigma^2 and cos = 1 / sqrt(1 + |noise|^2) for a unit vector
    sigma = float(np.sqrt((1 / cosine**2 - 1) / used.sum(axis=1).mean()))
    rng = np.random.default_rng(seed)
    added = 0
    while have + added < total:
        n = min(batch, total - have - added)
        picks = rng.integers(0, len(originals), n)
        noisy = matrix[picks] + rng.normal(0.0, sigma, (n, matrix.shape[1])).astype(np.float32) * used[picks]
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        records = [
            (
                uuid.uuid4(),
                originals[p]["content"],
                {**originals[p]["metadata"], "copy_of": str(originals[p]["id"])},
                vector,
            )
            for p, vector in zip(picks, noisy)
        ]
        async with conn.transaction():
            await conn.copy_records_to_table(
                "embeddings", records=records, columns=["id", "content", "metadata", "embedding"]
            )
        added += n
    await conn.execute("ANALYZE embeddings")
    return added


def _array(value):
    """pgvector's codec gives numpy arrays or `Vector` objects, depending on its version."""
    return value.to_numpy() if hasattr(value, "to_numpy") else value


# ---------------------------------------------------------------------------------------------------------------------
# Build memory
# ---------------------------------------------------------------------------------------------------------------------
NO_LONGER_FITS = re.compile(r"no longer fits into maintenance_work_mem after (\d+) tuples")


async def build_hnsw(
    conn, maintenance_work_mem: str, *, table: str = "embeddings", m: int = 16, ef_construction: int = 64
) -> dict:
    """Drop and build the cosine HNSW index of `table` with this much memory.

    Returns maintenance_work_mem, seconds, the index size in MB, and `fits_until`: the tuple count after which
    pgvector said the graph no longer fits in memory (None if it fit), with the bytes per tuple that implies."""
    memory_bytes(maintenance_work_mem)  # validated before it reaches SQL
    notices: list[str] = []

    def listen(_conn, message) -> None:
        notices.append(message.message)

    name = f"{table}_scale_hnsw"
    conn.add_log_listener(listen)
    try:
        await conn.execute(f"DROP INDEX IF EXISTS {name}")
        async with conn.transaction():
            await conn.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
            started = time.perf_counter()
            await conn.execute(
                f"CREATE INDEX {name} ON {table} USING hnsw (embedding vector_cosine_ops) "
                f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
            )
            seconds = time.perf_counter() - started
        await asyncio.sleep(0.05)  # notices arrive through the event loop
    finally:
        conn.remove_log_listener(listen)
    fits_until = next((int(match[1]) for n in notices if (match := NO_LONGER_FITS.search(n))), None)
    size = await conn.fetchval("SELECT pg_relation_size($1::regclass)", name)
    return {
        "maintenance_work_mem": maintenance_work_mem,
        "seconds": seconds,
        "index_mb": size / 1e6,
        "fits_until": fits_until,
        "bytes_per_tuple": memory_bytes(maintenance_work_mem) / fits_until if fits_until else None,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Partitioning by a metadata key
# ---------------------------------------------------------------------------------------------------------------------
async def partition_by_topic(conn, *, partitions: int = 8, target: str = "embeddings_by_topic") -> list[str]:
    """Copy `embeddings` into a table LIST-partitioned by `metadata->>'topic'`: one partition for each of the
    `partitions` largest topics and a DEFAULT one for the rest, with one cosine HNSW index per partition (created
    through the parent). Returns the topics that got their own partition."""
    topics = [
        r[0]
        for r in await conn.fetch(
            "SELECT metadata->>'topic' FROM embeddings WHERE metadata ? 'topic' GROUP BY 1 ORDER BY count(*) DESC, 1 "
            "LIMIT $1",
            partitions,
        )
    ]
    for topic in topics:
        if not re.fullmatch(r"[a-z0-9_]{1,40}", topic):
            raise ValueError(f"topic {topic!r} cannot name a partition")
    await conn.execute(f"DROP TABLE IF EXISTS {target} CASCADE")
    # A primary key of a partitioned table must contain the partition key, and an expression cannot be in one: the
    # ids stay unique because they are copied from `embeddings`.
    await conn.execute(
        f"CREATE TABLE {target} (id uuid NOT NULL, content text NOT NULL, metadata jsonb NOT NULL, "
        f"embedding vector(1536) NOT NULL) PARTITION BY LIST ((metadata->>'topic'))"
    )
    for topic in topics:
        await conn.execute(f"CREATE TABLE {target}_{topic} PARTITION OF {target} FOR VALUES IN ('{topic}')")
    await conn.execute(f"CREATE TABLE {target}_other PARTITION OF {target} DEFAULT")
    await conn.execute(f"INSERT INTO {target} SELECT id, content, metadata, embedding FROM embeddings")
    await conn.execute(f"CREATE INDEX ON {target} USING hnsw (embedding vector_cosine_ops)")
    await conn.execute(f"ANALYZE {target}")
    return topics


async def filtered_search(conn, queries, topics: Sequence[str], *, target: str = "embeddings_by_topic"):
    """A search filtered on each topic, on the same queries: on one table (the planner's choice; its HNSW index with a
    filter; the same with pgvector's iterative scan) and on the table partitioned by topic (`partition_by_topic`:
    the planner's choice; the topic's own index). A DataFrame with rows returned, recall@10 against the exact filtered
    answer, p50 latency and the plan node that served it."""
    import pandas as pd

    counts = dict(await conn.fetch("SELECT metadata->>'topic', count(*) FROM embeddings GROUP BY 1"))
    total = sum(counts.values())
    one = "SELECT id FROM embeddings WHERE metadata->>'topic' = $2 ORDER BY embedding <=> $1 LIMIT 10"
    parted = one.replace("FROM embeddings", f"FROM {target}")
    forced = {"hnsw.ef_search": 40, "enable_seqscan": "off"}  # the index, even where the planner would scan
    variants: list[tuple[str, str, dict[str, object]]] = [
        ("one table: planner's choice", one, {"hnsw.ef_search": 40}),
        ("one table: its index + filter", one, forced),
        ("one table: index + filter + iterative scan", one, {**forced, "hnsw.iterative_scan": "relaxed_order"}),
        ("partitioned: planner's choice", parted, {"hnsw.ef_search": 40}),
        ("partitioned: the topic's own index", parted, forced),
    ]
    rows = []
    for topic in topics:
        params = [(q, topic) for q in queries]
        truth, exact_ms = await timed_ids(conn, one, params, settings={"enable_indexscan": "off"})
        for name, sql, settings in variants:
            found, ms = await timed_ids(conn, sql, params, settings=settings)
            rows.append(
                {
                    "topic": f"{topic} ({counts.get(topic, 0) / total:.1%} of rows)",
                    "search": name,
                    "rows returned": sum(map(len, found)) / len(found),
                    "recall@10": recall(found, truth),
                    "p50 ms": ms,
                    "exact ms": exact_ms,
                    "served by": (await plan_of(conn, sql, params[0], settings)).split(" on ")[0],
                }
            )
    return pd.DataFrame(rows)


TOP_K = "SELECT id FROM embeddings ORDER BY embedding <=> $1 LIMIT 10"


async def measure_table(conn, queries, maintenance_work_mem: str, label: str = "") -> tuple[dict, dict]:
    """Build the HNSW index with this memory, then recall@10 at ef_search 40 and 100 and p50 latencies against the
    exact scan on `queries`. Returns the row (for a table of tables) and the build (`build_hnsw`)."""
    rows = await conn.fetchval("SELECT count(*) FROM embeddings")
    build = await build_hnsw(conn, maintenance_work_mem)
    truth, exact_ms = await timed_ids(conn, TOP_K, queries, settings={"enable_indexscan": "off"})
    row = {"table": label, "rows": rows, "build s": build["seconds"], "index MB": build["index_mb"]}
    row["graph fits until"] = build["fits_until"] or "all"
    row["exact ms"] = exact_ms
    for ef in (40, 100):
        found, ms = await timed_ids(conn, TOP_K, queries, settings={"hnsw.ef_search": ef})
        row[f"recall ef {ef}"] = recall(found, truth)
        row[f"hnsw ms ef {ef}"] = ms
    row["served by"] = (await plan_of(conn, TOP_K, queries[0], {"hnsw.ef_search": 40})).split(" on ")[0]
    return row, build


# ---------------------------------------------------------------------------------------------------------------------
# Timing, with the plan that served it
# ---------------------------------------------------------------------------------------------------------------------
def _params(query) -> tuple:
    return query if isinstance(query, tuple) else (query,)


async def _set_local(conn, settings: dict[str, object]) -> None:
    for name, value in {**CUSTOM_PLANS, **settings}.items():
        await conn.execute(f"SET LOCAL {name} = {value}")


async def timed_ids(conn, sql: str, queries, *, settings: dict[str, object]) -> tuple[list[list], float]:
    """Ids per query and the p50 latency in ms, each query in its own transaction with SET LOCAL `settings`. A query
    is the value of $1, or a tuple of the values of $1, $2, ..."""
    found, times = [], []
    for q in queries:
        started = time.perf_counter()
        async with conn.transaction():
            await _set_local(conn, settings)
            found.append([r["id"] for r in await conn.fetch(sql, *_params(q))])
        times.append((time.perf_counter() - started) * 1000)
    return found, float(np.median(times))


async def plan_of(conn, sql: str, query, settings: dict[str, object]) -> str:
    """The scan node EXPLAIN chooses under `settings` (e.g. 'Index Scan using …' or 'Seq Scan')."""
    async with conn.transaction():
        await _set_local(conn, settings)
        lines = [r[0] for r in await conn.fetch("EXPLAIN " + sql, *_params(query))]
    scan = next((line.strip().removeprefix("->").strip() for line in lines if "Scan" in line), lines[0])
    return scan.split("  (")[0]


def recall(found: Sequence[Sequence], truth: Sequence[Sequence]) -> float:
    """Mean recall of `found` against `truth`, per query the share of its true ids found (an empty truth counts 1)."""
    return float(np.mean([len(set(f) & set(t)) / len(t) if t else 1.0 for f, t in zip(found, truth)]))
