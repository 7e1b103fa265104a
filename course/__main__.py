"""Course command line.

python -m course db start|stop|status|url|psql   the database (embedded by default, or DATABASE_URL)
python -m course corpus build|load|status         the document set in data/ and in the embeddings table
python -m course setup                            start the database, build and load the corpus (make lab)
python -m course lab [--objective N] [jupyter args]  JupyterLab on one objective's notebook and lab file
python -m course serve [--target T] [--host H] [--port P]  the search API (make serve) with the course's limits
python -m course cluster start --replicas N|stop|status   hot standbys of the course's server (streaming replication)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from course import database


def _db(action: str) -> int:
    if action == "start":
        started = time.perf_counter()
        url = database.start()
        info = database.check_server(url)
        print(
            f"PostgreSQL {info['server_version']} with pgvector {info['pgvector']} ready in "
            f"{time.perf_counter() - started:.1f} s: {info['url']}"
        )
    elif action == "stop":
        print("stopped" if database.stop() else "not running")
    elif action == "status":
        status = database.status()
        print(json.dumps(status, indent=2))
        return 0 if status.get("running") else 1
    elif action == "url":
        print(database.start())
    elif action == "psql":
        url = database.start()
        psql = database.psql_path()
        os.execv(psql, [psql, url, *sys.argv[3:]])
    return 0


async def _corpus_status() -> dict:
    from course.corpus import available_corpus, corpus_path

    name = available_corpus()
    result: dict = {"built": name, "file": str(corpus_path(name)) if name else None}
    conn = await database.connect()
    try:
        if await conn.fetchval("SELECT to_regclass('embeddings') IS NOT NULL"):
            rows = await conn.fetch(
                "SELECT metadata->>'model' AS model, count(*) AS n FROM embeddings GROUP BY 1 ORDER BY 2 DESC"
            )
            result["loaded"] = {r["model"]: r["n"] for r in rows}
        else:
            result["loaded"] = {}
    finally:
        await conn.close()
    return result


async def _load() -> int:
    from course.table import ensure_search_index, ensure_text_index, load_corpus, prewarm

    conn = await database.connect()
    try:
        started = time.perf_counter()
        added = await load_corpus(conn)
        total = await conn.fetchval("SELECT count(*) FROM embeddings")
        print(f"Corpus loaded: {added} rows added, {total} in `embeddings` ({time.perf_counter() - started:.1f} s)")
        started = time.perf_counter()
        if await ensure_search_index(conn):
            print(f"HNSW index built ({time.perf_counter() - started:.1f} s)")
        started = time.perf_counter()
        if await ensure_text_index(conn):
            print(f"Full-text GIN index built ({time.perf_counter() - started:.1f} s)")
        blocks = await prewarm(conn)
        if blocks:
            print(f"Table and indexes cached in shared_buffers ({blocks * 8 / 1024:.0f} MB, pg_prewarm)")
    finally:
        await conn.close()
    return 0


def _corpus(action: str) -> int:
    from course.corpus import build_corpus

    if action == "build":
        started = time.perf_counter()
        path = build_corpus()
        lines = sum(1 for _ in path.open(encoding="utf-8"))
        print(f"{path}: {lines} chunks, {path.stat().st_size / 1e6:.1f} MB ({time.perf_counter() - started:.1f} s)")
        return 0
    if action == "load":
        database.start()
        build_corpus()
        return asyncio.run(_load())
    if action == "status":
        print(json.dumps(asyncio.run(_corpus_status()), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course", description="PostgreSQL & pgvector course runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="the course database")
    db.add_argument("action", choices=["start", "stop", "status", "url", "psql"])
    corpus = sub.add_parser("corpus", help="the course documents")
    corpus.add_argument("action", choices=["build", "load", "status"])
    cluster = sub.add_parser("cluster", help="hot standbys of the course's server (streaming replication)")
    cluster.add_argument("action", choices=["start", "stop", "status"])
    cluster.add_argument("--replicas", type=int, default=1, help="standbys to run (start; default 1)")
    sub.add_parser("setup", help="start the database, build and load the corpus")
    sub.add_parser("lab", help="JupyterLab opened on one objective (--objective N), extra arguments go to jupyter lab")
    sub.add_parser("serve", help="the search API under uvicorn with the course's limits (--target, --host, --port)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "lab":
        from course import lab

        return lab.main(rest)
    if args.command == "serve":
        from course.web import serve

        return serve.main(rest)
    try:
        if args.command == "db":
            return _db(args.action)
        if args.command == "corpus":
            return _corpus(args.action)
        if args.command == "cluster":
            from course import cluster as local_cluster

            return local_cluster.main(args.action, args.replicas)
        _db("start")
        _corpus("build")
        return _corpus("load")
    except (database.DatabaseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
