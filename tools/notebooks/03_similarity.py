# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (course)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Objective 3 — distance operators and `search_similar()`
#
# pgvector has six distance operators. Three are the ones text embeddings are made for, each with its own index
# operator class (the other three: `<+>` L1 "taxicab" distance, and `<~>` Hamming and `<%>` Jaccard distance for
# bit vectors):
#
# | operator | distance | similarity (higher = closer) | index opclass |
# |---|---|---|---|
# | `<=>` | cosine distance, 1 − cos θ, in [0, 2] | `1 − distance` | `vector_cosine_ops` |
# | `<->` | Euclidean (L2) distance, in [0, ∞) | `1 / (1 + distance)` (ours: monotone, in (0, 1]) | `vector_l2_ops` |
# | `<#>` | **negative** inner product, −(a·b) | `−distance` = a·b | `vector_ip_ops` |
#
# You will write, in `labs/objective3.py`: the similarity transform, argument validation, the top-k SQL, a thresholded
# search that still uses the index, `search_similar()` on an asyncpg pool, and `compare_metrics()`.

# %%
# %load_ext autoreload
# %autoreload 2
from course.notebook import friendly_errors

friendly_errors()  # an error from a step still to write says which step, without a long traceback

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from course import database
from course.corpus import corpus_guide
from course.table import ensure_search_index
from course.embeddings import get_embedder
from course.target import load_objective
from checks import check

obj = load_objective(3)
guide = corpus_guide()  # example questions that suit the corpus in use
pool = await database.create_pool()  # every connection gets pgvector's codec (vectors in/out as parameters)
async with pool.acquire() as conn:
    built = await ensure_search_index(conn)  # HNSW on the corpus (Objective 2 explains it)
    rows = await conn.fetchval("SELECT count(*) FROM embeddings")
embedder = get_embedder()
index_state = "built now" if built else "already there"
print(f"{obj.__name__}: {rows} corpus rows, HNSW index {index_state}, model {embedder.model_id}")


# %% [markdown]
# ## 1. The operators on two tiny vectors
#
# `[1, 2]` and `[2, 4]` point the same way but have different lengths: cosine says they are identical, L2 says they
# are far apart, and the inner product rewards the longer one.

# %%
async with pool.acquire() as conn:
    row = await conn.fetchrow("""
        SELECT '[1,2]'::vector <=> '[2,4]' AS cosine_distance,
               '[1,2]'::vector <-> '[2,4]' AS l2_distance,
               '[1,2]'::vector <#> '[2,4]' AS negative_inner_product""")
dict(row)

# %% [markdown]
# ## 2. Top-k with each operator
#
# An index can only serve `ORDER BY embedding <op> $1 LIMIT $2` — ascending by the raw operator. Write
# `top_k_sql(metric)`, then `similarity_from_distance()` and `validate_search()`, and finally `search_similar()`.
# Our corpus vectors are unit length, so the three metrics should agree here.

# %%
question = guide.questions[0]
print(question)
[q] = await embedder.embed([question], kind="query")
frames = []
for metric in obj.OPERATORS:
    results = await obj.search_similar(pool, q, top_k=5, metric=metric)
    frames.append(
        pd.DataFrame(
            {
                "metric": metric,
                "section": [r.metadata["section"] for r in results],
                "distance": [round(r.distance, 4) for r in results],
                "similarity": [round(r.similarity, 4) for r in results],
            }
        )
    )
pd.concat(frames, ignore_index=True)


# %% [markdown]
# ## 3. A minimum similarity — and how *not* to write it
#
# What counts as "similar enough" depends on the model: small local models give lower cosine values than
# `text-embedding-ada-002` (whose scores sit around 0.7–0.9). Look at the distribution for one question before
# choosing a threshold:

# %%
async with pool.acquire() as conn:
    sims = [r[0] for r in await conn.fetch("SELECT 1 - (embedding <=> $1) FROM embeddings", np.asarray(q))]
top10 = [r.similarity for r in await obj.search_similar(pool, q, top_k=10)]
fig, ax = plt.subplots(figsize=(7, 3))
ax.hist(sims, bins=80, color="#8da0cb")
for s in top10:
    ax.axvline(s, color="#e41a1c", lw=0.8)
ax.set_xlabel(f"cosine similarity to {question!r}")
ax.set_ylabel("chunks")
ax.set_title(f"{len(sims)} chunks; red: the top 10 ({embedder.model_id})")
plt.tight_layout()
plt.show()
print(f"median {np.median(sims):.3f}, 99th percentile {np.percentile(sims, 99):.3f}, best {max(sims):.3f}")

# %% [markdown]
# The tempting SQL filters and sorts on the similarity expression:
#
# ```sql
# SELECT … FROM embeddings WHERE 1 - (embedding <=> $1) >= $2 ORDER BY 1 - (embedding <=> $1) DESC LIMIT 10
# ```
#
# No index can answer that: it computes the distance for **every row**, then sorts. The fast shape keeps the
# indexable top-k query as a subquery and filters its result (`search_sql()`):

# %%
threshold = float(np.percentile(sims, 99.5))
slow_sql = """SELECT id, content, metadata, embedding <=> $1 AS distance FROM embeddings
              WHERE 1 - (embedding <=> $1) >= $2 ORDER BY 1 - (embedding <=> $1) DESC LIMIT 10"""


async def explain(sql, *args):
    async with pool.acquire() as conn:
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    plan = plan[0] if isinstance(plan, list) else __import__("json").loads(plan)[0]
    nodes, node = [], plan["Plan"]
    while node:
        nodes.append(node["Node Type"] + (f" using {node['Index Name']}" if "Index Name" in node else ""))
        node = (node.get("Plans") or [None])[0]
    return " → ".join(nodes), plan["Execution Time"]


for name, sql, args in [
    ("WHERE on similarity", slow_sql, (np.asarray(q), threshold)),
    ("filter outside top-k", obj.search_sql("cosine"), (np.asarray(q), 10, threshold)),
]:
    nodes, ms = await explain(sql, *args)
    print(f"{name:22} {ms:7.2f} ms   {nodes}")

# %% [markdown]
# Both return the rows above the threshold; the second lets HNSW find the 10 nearest first. Rows below the
# threshold are left out, so a stricter threshold returns fewer than 10 — that's what a threshold means:

# %%
strict = float(np.percentile(sims, 99.97))  # about 3 rows of the corpus score higher than this
print(
    f"threshold {strict:.3f}: {len(await obj.search_similar(pool, q, top_k=10, min_similarity=strict))} results of 10"
)
results = await obj.search_similar(pool, q, top_k=10, min_similarity=threshold)
print(f"threshold {threshold:.3f}: {len(results)} results of 10")
pd.DataFrame(
    [
        {"section": r.metadata["section"], "similarity": round(r.similarity, 3), "content": r.content[:80]}
        for r in results
    ]
)

# %% [markdown]
# ## 4. When do the metrics disagree?
#
# For unit-length vectors, ‖a − b‖² = 2 − 2 cos θ and a·b = cos θ: all three orderings are the same, so use the
# cheapest one (inner product) or the clearest (cosine). They disagree when lengths vary. To see it, we copy 2,000
# corpus vectors into a practice database and give each a random length.

# %%
from pgvector.asyncpg import register_vector
from course.table import EMBEDDINGS_TABLE_DDL

url = database.scratch_database("objective3", reset=True)
async with pool.acquire() as src:
    sample = await src.fetch("SELECT id, content, metadata, embedding FROM embeddings ORDER BY id LIMIT 2000")
scratch = await database.connect(url)
await scratch.execute("CREATE EXTENSION IF NOT EXISTS vector")
await scratch.execute(EMBEDDINGS_TABLE_DDL)
await register_vector(scratch)
lengths = np.random.default_rng(0).uniform(0.2, 3.0, len(sample))
await scratch.executemany(
    "INSERT INTO embeddings VALUES ($1, $2, $3, $4)",
    [(r["id"], r["content"], r["metadata"], r["embedding"].to_numpy() * s) for r, s in zip(sample, lengths)],
)
unit = await obj.compare_metrics(pool, q, top_k=10)
scaled = await obj.compare_metrics(scratch, q, top_k=10)
pd.DataFrame({"unit-length corpus": unit["overlap"], "random lengths": scaled["overlap"]})

# %% [markdown]
# **Which metric when?**
#
# * **Cosine** (`<=>`): the default for text embeddings — only direction matters. OpenAI's models return unit
#   vectors; Gemini's are unit length only at their full 3,072 dimensions, so the course normalises them at 1,536, as
#   it does the local model's. On unit vectors cosine and inner product give the same ranking.
# * **Inner product** (`<#>`): on normalised vectors it ranks as cosine does and needs no norms; the right choice when a
#   model's vector *length* carries meaning (some recommendation models). Remember pgvector returns its negative.
# * **L2** (`<->`): for embeddings trained with Euclidean loss (image and some audio models) and for
#   clustering-style data where absolute position matters.

# %%
await scratch.close()
check(3)

# %%
await pool.close()
