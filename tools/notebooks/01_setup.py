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
# # Objective 1 — pgvector setup: an extension, a table, and real embeddings
#
# By the end of this notebook your `labs/objective1.py` will:
#
# 1. enable the **pgvector** extension,
# 2. create an `embeddings` table: `id UUID`, `content TEXT`, `metadata JSONB`, `embedding vector(1536)`,
# 3. refuse vectors that would poison the table (wrong length, NaN, infinity, all zeros),
# 4. embed documents with an embedding API and insert them in batches — all or nothing,
# 5. verify what was stored with `vector_dims()`.
#
# **How to work:** open `labs/objective1.py` next to this notebook, replace each `raise NotImplementedError("TODO: …")`
# with your code, save, and re-run the cells here. `check(1)` at the end grades your work and gives hints.
# Cells that call an unfinished function stop with the TODO message — that's expected until you write it.

# %%
# %load_ext autoreload
# %autoreload 2
from course.notebook import friendly_errors

friendly_errors()  # an error from a step still to write says which step, without a long traceback

import pandas as pd
from course import database
from course.embeddings import get_embedder
from course.corpus import corpus_guide
from course.target import load_objective
from checks import check

guide = corpus_guide()  # example questions that suit the corpus in use
obj = load_objective(1)  # labs.objective1 (COURSE_TARGET=solutions for the reference)
url = database.scratch_database("objective1", reset=True)  # an empty practice database, just for this notebook
conn = await database.connect(url)
print(f"Grading {obj.__name__}; practising in database {url.split('/')[-1].split('?')[0]}")
print(await conn.fetchval("SELECT version()"))

# %% [markdown]
# ## 1. Enable the extension
#
# pgvector is a PostgreSQL *extension*: it adds the `vector` type, distance operators and two index methods. The
# server has it available (`pg_available_extensions`), but each database must enable it with `CREATE EXTENSION`.
# Write `enable_extension(conn)`: it must be safe to run twice, and return the installed version.

# %%
print("available:", await conn.fetchval("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"))
version = await obj.enable_extension(conn)
print("enabled:  ", version)
pd.DataFrame(map(dict, await conn.fetch("SELECT extname, extversion FROM pg_extension ORDER BY extname")))

# %% [markdown]
# ## 2. Create the `embeddings` table
#
# | column | type | why |
# |---|---|---|
# | `id` | `uuid PRIMARY KEY DEFAULT gen_random_uuid()` | made anywhere (client or server) without coordination |
# | `content` | `text NOT NULL` | the chunk of text the vector represents — search results show it |
# | `metadata` | `jsonb NOT NULL DEFAULT '{}'` | source, page, language, *the vector's model*… filterable (Obj. 4) |
# | `embedding` | `vector(1536) NOT NULL` | the typmod (1536) makes PostgreSQL reject vectors of any other length |
#
# Write `create_embeddings_table(conn)` with `CREATE TABLE IF NOT EXISTS`. The query below is what psql's
# `\d embeddings` shows.

# %%
await obj.create_embeddings_table(conn)
columns = await conn.fetch("""
    SELECT a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
           pg_get_expr(d.adbin, d.adrelid) AS default
    FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = 'embeddings'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""")
pd.DataFrame(map(dict, columns))

# %% [markdown]
# ## 3. Where vectors come from: an embedding API
#
# An *embedding model* maps text to a point in a high-dimensional space where similar meanings land close together.
# The course talks to every provider through one async interface: `await embedder.embed(texts)` — with
# `kind="query"` for a search (Gemini embeds questions and passages with different task types; the others ignore it).
#
# * `local` (default): **WordLlama**, a small real model whose weights ship inside its PyPI wheel — no API key, no
#   download, ~0.1 s per 1,000 sentences. It produces 256 numbers; the course appends zeros up to 1536, which changes
#   no distance (cosine, L2 and inner product are all computed from dot products, and zeros add nothing).
# * `openai`: `text-embedding-ada-002` over HTTPS — set `EMBEDDING_PROVIDER=openai` and `OPENAI_API_KEY` in `.env`.
# * `gemini`: `gemini-embedding-001` with 1536 output dimensions — `EMBEDDING_PROVIDER=gemini`, `GEMINI_API_KEY`.
#
# Vectors from different models live in different spaces: never compare them. That is why each row records its model.

# %%
embedder = get_embedder()
sentences = [
    "How do I create an index on a table?",
    "Building an index speeds up lookups on a column.",
    "VACUUM reclaims storage occupied by dead rows.",
    "Autovacuum cleans up dead tuples in the background.",
    "The weather was sunny at the beach.",
]
vectors = await embedder.embed(sentences)
print(
    f"model: {embedder.model_id}  dimensions: {len(vectors[0])}  first values: {[round(x, 3) for x in vectors[0][:5]]}"
)

# %% [markdown]
# Cosine similarity between every pair: sentences about the same topic score higher than unrelated ones.

# %%
import numpy as np
import matplotlib.pyplot as plt

m = np.array(vectors)
similarity = m @ m.T  # the vectors are unit length, so the dot product is the cosine
fig, ax = plt.subplots(figsize=(6, 4.5))
im = ax.imshow(similarity, cmap="viridis", vmin=0, vmax=1)
labels = [s[:28] + "…" for s in sentences]
ax.set_xticks(range(5), labels, rotation=40, ha="right")
ax.set_yticks(range(5), labels)
for i in range(5):
    for j in range(5):
        ax.text(j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", color="w" if similarity[i, j] < 0.6 else "k")
ax.set_title(f"Cosine similarity ({embedder.model_id})")
fig.colorbar(im)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Refuse bad vectors before they reach the database
#
# PostgreSQL refuses a vector of the wrong length, and pgvector refuses NaN and infinity — but only when the row
# reaches the database: after the embedding API was paid for, in the middle of a batch, with a message about a
# `vector` literal rather than about your document. And one bad vector pgvector **does** store: the all-zero vector,
# which has no direction, so every cosine distance to it is NaN. See for yourself (no table needed):

# %%
await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # the demo needs the type (section 1 does this too)
for name, literal in [("NaN", "[NaN,1,2]"), ("infinity", "[Infinity,1,2]"), ("all zeros", "[0,0,0]")]:
    try:
        distance = await conn.fetchval("SELECT $1::vector <=> '[1,2,3]'::vector", literal)
        print(f"{name:10} stored; its cosine distance to [1,2,3] is {distance}")
    except Exception as exc:
        print(f"{name:10} refused by the database: {type(exc).__name__}: {exc}")

# %% [markdown]
# So validate first, before anything is embedded or sent: a clear message naming the problem, and the zero vector
# caught too. Write `validate_embedding(vector)`: return the vector as a list of floats, or raise `ValueError` with a
# helpful message.

# %%
import math

good = obj.validate_embedding(vectors[0])
print("ok:", len(good), "floats")
for name, bad in [
    ("too short", [0.1] * 1535),
    ("NaN", [0.1] * 1535 + [math.nan]),
    ("infinity", [math.inf] + [0.1] * 1535),
    ("zeros", [0.0] * 1536),
]:
    try:
        obj.validate_embedding(bad)
        print(f"{name:10} accepted — that is a bug!")
    except ValueError as exc:
        print(f"{name:10} refused: {exc}")

# %% [markdown]
# ## 5. Insert documents with their embeddings — in batches, all or nothing
#
# `insert_documents(conn, embedder, documents, batch_size=100)` embeds `batch_size` texts per API call (APIs limit the
# inputs per request and charge per call overhead), validates every vector, and inserts the rows. Two rules make it
# safe:
#
# * **All or nothing** — run every batch inside one transaction, so a provider outage or a bad vector in batch 7
#   leaves no half-written data behind.
# * **Vectors travel as parameters** through pgvector's codec (`register_vector`), never as formatted strings.
#
# Here we load 300 real chunks of the PostgreSQL manual (the course corpus).

# %%
import time
from course.corpus import read_corpus

documents = [{"content": r["content"], "metadata": r["metadata"]} for r in read_corpus(limit=300)]
started = time.perf_counter()
ids = await obj.insert_documents(conn, embedder, documents, batch_size=100)
elapsed = time.perf_counter() - started
print(f"inserted {len(ids)} documents in {elapsed:.2f} s ({len(ids) / elapsed:,.0f} rows/s)")

# %% [markdown]
# What a failure looks like: an empty document is refused before anything is embedded, and the table is unchanged.

# %%
before = await conn.fetchval("SELECT count(*) FROM embeddings")
try:
    await obj.insert_documents(conn, embedder, ["A fine document.", "   "])
except ValueError as exc:
    print("refused:", exc)
print("rows before:", before, "after:", await conn.fetchval("SELECT count(*) FROM embeddings"))

# %% [markdown]
# ## 6. Verify with `vector_dims()`
#
# `vector_dims(embedding)` is pgvector's own count of a stored vector's dimensions. Write `count_by_dimension(conn)`.

# %%
print(await obj.count_by_dimension(conn))
rows = await conn.fetch("""
    SELECT left(content, 50) AS content, metadata->>'section' AS section, metadata->>'model' AS model,
           vector_dims(embedding) AS dims, round(vector_norm(embedding)::numeric, 4) AS norm
    FROM embeddings LIMIT 5""")
pd.DataFrame(map(dict, rows))

# %% [markdown]
# ### A first taste of search (Objective 3 goes deep)
#
# `<=>` is pgvector's cosine *distance* (1 − cosine similarity). Order by it to find the nearest chunks to a question.

# %%
from pgvector.asyncpg import register_vector

await register_vector(conn)
[question] = await embedder.embed([guide.questions[0]], kind="query")
print(guide.questions[0])
rows = await conn.fetch(
    """
    SELECT metadata->>'section' AS section, round((1 - (embedding <=> $1))::numeric, 3) AS similarity
    FROM embeddings ORDER BY embedding <=> $1 LIMIT 5""",
    question,
)
pd.DataFrame(map(dict, rows))

# %% [markdown]
# ## Check your work
#
# `check(1)` runs the Objective 1 checks against your `labs/objective1.py` in a fresh process and prints a hint for
# every failure. (In a terminal: `make check OBJ=1`.)

# %%
check(1)

# %%
await conn.close()
