"""The search service keeps its contract under hostile input: the OpenAPI document tells the truth (schemathesis,
all checks), every bad input is a documented 4xx on a connection that stays usable, and writes need the key."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from course import database
from course.table import clone_corpus, ensure_search_index, ensure_text_index
from course.settings import Settings
from solutions.objective6 import create_app
from tests.servers import uvicorn_in_thread

KEY = "contract-test-key-0123456789"
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


async def served_table(url: str, rows: int) -> None:
    """`rows` corpus chunks in the database at `url`, with the indexes `course setup` builds (the default mode's
    full-text index among them)."""
    conn = await database.connect(url)
    try:
        await clone_corpus(conn, limit=rows)
        await ensure_search_index(conn)
        await ensure_text_index(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def server():
    """The reference service under uvicorn, on a throw-away database holding 300 corpus chunks and the indexes
    `course setup` builds (the default mode's full-text index among them), with a write key."""
    with database.temporary_database("contract") as url:
        asyncio.run(served_table(url, 300))
        app = create_app(database_url=url, settings=Settings(_env_file=None, search_api_key=KEY))
        with uvicorn_in_thread(app, log_level="error") as port:
            yield port


def test_schemathesis_finds_nothing(server):
    """Property-based fuzzing from the service's own /openapi.json, every check, fixed seed."""
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "--config-file",
            str(Path(__file__).parent / "schemathesis.toml"),
            "run",
            f"http://127.0.0.1:{server}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--header",
            f"Authorization: Bearer {KEY}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout


GOOD = ("POST", "/search?top_k=2", {"Content-Type": "application/json"}, json.dumps({"query": "vacuum"}).encode())
AUTH = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
HOSTILE = [
    # name, method, path, headers, body, expected status
    ("NUL in the query", "POST", "/search", {"Content-Type": "application/json"}, b'{"query": "a\\u0000b"}', 422),
    (
        "lone surrogate in the query",
        "POST",
        "/search",
        {"Content-Type": "application/json"},
        b'{"query": "a\\ud800"}',
        422,
    ),
    (
        "whitespace-only query",
        "POST",
        "/search",
        {"Content-Type": "application/json"},
        b'{"query": " \\t\\u3000"}',
        422,
    ),
    (
        "100 KB query",
        "POST",
        "/search",
        {"Content-Type": "application/json"},
        json.dumps({"query": "x" * 100_000}).encode(),
        422,
    ),
    ("unknown body field", "POST", "/search", {"Content-Type": "application/json"}, b'{"query": "v", "topk": 3}', 422),
    ("wrong content type", "POST", "/search", {"Content-Type": "text/plain"}, b"query=vacuum", 422),
    ("not JSON", "POST", "/search", {"Content-Type": "application/json"}, b"{oops", 422),
    (
        "NUL in a filter value",
        "POST",
        "/search?filter=%7B%22a%22%3A%22x%5Cu0000%22%7D",
        {"Content-Type": "application/json"},
        b'{"query": "v"}',
        422,
    ),
    (
        "surrogate in a filter",
        "POST",
        "/search?filter=%7B%22a%22%3A%22%5Cud800%22%7D",
        {"Content-Type": "application/json"},
        b'{"query": "v"}',
        422,
    ),
    (
        "infinite filter number",
        "POST",
        "/search?filter=%7B%22a%22%3A1e400%7D",
        {"Content-Type": "application/json"},
        b'{"query": "v"}',
        422,
    ),
    (
        "filter nested 1,300 deep",
        "POST",
        "/search?filter=" + "%5B" * 1300 + "%5D" * 1300,
        {"Content-Type": "application/json"},
        b'{"query": "v"}',
        422,
    ),
    (
        "filter nested 2,000 deep",
        "POST",
        "/search?filter=" + "%5B" * 2000 + "%5D" * 2000,
        {"Content-Type": "application/json"},
        b'{"query": "v"}',
        414,
    ),
    (
        "injection-shaped filter key",
        "POST",
        "/search?filter=%7B%22a%27)%20OR%201%3D1--%22%3A%22x%22%7D",
        {"Content-Type": "application/json"},
        b'{"query": "v"}',
        200,
    ),
    (
        "filter with 9 keys",
        "POST",
        "/search?filter=" + json.dumps({f"k{i}": i for i in range(9)}).replace(" ", ""),
        {"Content-Type": "application/json"},
        b'{"query": "v"}',
        422,
    ),
    (
        "min_score given twice",
        "POST",
        "/search?min_score=abc&min_score=0.3",
        {"Content-Type": "application/json"},
        b'{"query": "v"}',
        422,
    ),
    ("unknown mode", "POST", "/search?mode=bm25", {"Content-Type": "application/json"}, b'{"query": "v"}', 422),
    (
        "read-after position that is not an LSN",
        "POST",
        "/search",
        {"Content-Type": "application/json", "X-Read-After-LSN": "0/1; DROP TABLE embeddings"},
        b'{"query": "v"}',
        400,
    ),
    (
        "read-after position past the primary's WAL",
        "POST",
        "/search",
        {"Content-Type": "application/json", "X-Read-After-LSN": "FFFFFFFF/FFFFFFFF"},
        b'{"query": "v"}',
        200,
    ),
    (
        "read-after position already written",
        "POST",
        "/search",
        {"Content-Type": "application/json", "X-Read-After-LSN": "0/1"},
        b'{"query": "v"}',
        200,
    ),
    (
        "injection-shaped query in rrf mode",
        "POST",
        "/search?mode=rrf",
        {"Content-Type": "application/json"},
        b'{"query": "a\') OR 1=1 -- & | ! <->"}',
        200,
    ),
    ("write without a key", "POST", "/documents", {"Content-Type": "application/json"}, b'{"content": "x"}', 401),
    (
        "write with a wrong key",
        "POST",
        "/documents",
        {"Content-Type": "application/json", "X-API-Key": "guess"},
        b'{"content": "x"}',
        401,
    ),
    ("NUL in content", "POST", "/documents", AUTH, b'{"content": "a\\u0000b"}', 422),
    ("whitespace-only content", "POST", "/documents", AUTH, b'{"content": "   "}', 422),
    ("NaN in metadata", "POST", "/documents", AUTH, b'{"content": "x", "metadata": {"a": NaN}}', 422),
    ("1e400 in metadata", "POST", "/documents", AUTH, b'{"content": "x", "metadata": {"a": 1e400}}', 422),
    ("surrogate in metadata", "POST", "/documents", AUTH, b'{"content": "x", "metadata": {"a": "\\udc00"}}', 422),
    (
        "metadata nested 2,000 deep",
        "POST",
        "/documents",
        AUTH,
        b'{"content": "x", "metadata": {"a": ' + b"[" * 2000 + b"]" * 2000 + b"}}",
        400,
    ),
    (
        "20 KB metadata",
        "POST",
        "/documents",
        AUTH,
        json.dumps({"content": "x", "metadata": {"a": "y" * 20_000}}).encode(),
        422,
    ),
    (
        "1 MB body",
        "POST",
        "/documents",
        AUTH,
        json.dumps({"content": "x", "metadata": {"a": "y" * 1_000_000}}).encode(),
        413,
    ),
    (
        "60 KB URL",  # past the app's 8 KiB, within the server's 64 KiB head: the service's own JSON 414
        "POST",
        "/search?filter=" + "a" * 60_000,
        {"Content-Type": "application/json"},
        b'{"query": "v"}',
        414,
    ),
    (
        "20 KB of headers",
        "POST",
        "/search",
        {"Content-Type": "application/json", "X-Padding": "a" * 20_000},
        b'{"query": "v"}',
        431,
    ),
]


@pytest.mark.parametrize("name, method, path, headers, body, expected", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_input_gets_its_status_and_the_connection_survives(server, name, method, path, headers, body, expected):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = json.loads(response.read())
        assert response.status == expected, f"{name}: {response.status} {payload}"
        if expected >= 400:
            assert set(payload) == {"detail", "error"} and payload["detail"], payload
            assert KEY not in json.dumps(payload)
        assert response.getheader("x-content-type-options") == "nosniff"
        socket_before = conn.sock
        assert socket_before is not None and response.getheader("connection") != "close", (
            "the server closed the connection"
        )
        conn.request(*GOOD[:2], body=GOOD[3], headers=GOOD[2])
        again = conn.getresponse()
        assert again.status == 200 and json.loads(again.read())["count"] >= 0
        assert conn.sock is socket_before, "the keep-alive connection was not reused"
    finally:
        conn.close()


def test_a_request_head_past_the_server_limit_is_refused_at_once(server):
    """A 200 KB URL never reaches the app: uvicorn (course.web.serve's limit) answers 400 and closes at once, and the
    next connection is served as usual."""
    import socket
    import time

    started = time.perf_counter()
    answer = b""
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        try:  # the server may answer and close while the rest is still being sent (a reset, then)
            sock.sendall(b"POST /search?filter=" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
    took = time.perf_counter() - started
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert took < 2, f"refused after {took:.2f} s"
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    conn.request(*GOOD[:2], body=GOOD[3], headers=GOOD[2])
    assert conn.getresponse().status == 200
    conn.close()


def test_writes_need_the_key_reads_do_not(server):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        conn.request(
            "POST",
            "/documents",
            body=json.dumps({"content": "written with the key", "metadata": {"t": 1}}),
            headers={"Content-Type": "application/json", **headers},
        )
        response = conn.getresponse()
        assert response.status == 201, response.read()
        assert "id" in json.loads(response.read())
    conn.request("GET", "/", headers={})
    page = conn.getresponse()
    assert page.status == 200 and b"<html" in page.read().lower()
    conn.close()


def test_openapi_documents_every_error(server):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    conn.request("GET", "/openapi.json")
    document = json.loads(conn.getresponse().read())
    conn.close()
    assert "HTTPValidationError" not in document["components"]["schemas"], (
        "422s have the ErrorBody shape, not FastAPI's"
    )
    for path, expected in (
        ("/search", {"400", "408", "413", "414", "422", "431", "502", "503"}),
        ("/documents", {"400", "401", "408", "413", "414", "422", "431", "502", "503"}),
    ):
        responses = document["paths"][path]["post"]["responses"]
        assert expected <= set(responses), (path, sorted(responses))
        for code in expected:
            assert responses[code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"
            }
        assert "Retry-After" in responses["503"]["headers"]
    assert document["paths"]["/documents"]["post"]["security"], "the write key is declared"
    assert set(document["paths"]["/healthz"]["get"]["responses"]) >= {"200", "503"}


def test_docs_work_offline(server):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    conn.request("GET", "/docs")
    html = conn.getresponse().read().decode()
    assert "cdn." not in html and "/docs-assets/swagger-ui-bundle.js" in html
    conn.request("GET", "/docs-assets/swagger-ui-bundle.js")
    asset = conn.getresponse()
    assert asset.status == 200 and len(asset.read()) > 100_000
    conn.close()


def test_without_a_key_writes_are_open_and_documented_as_such():
    document = create_app(settings=Settings(_env_file=None)).openapi()
    assert "security" not in document["paths"]["/documents"]["post"]
    assert "401" not in document["paths"]["/documents"]["post"]["responses"]


def test_result_cache_is_bounded_by_bytes_and_entries():
    """Each cached result list weighs its estimated bytes (at least max_bytes / entries): both bounds hold."""
    from solutions.objective6.service import Metrics, SearchHit, SearchService

    settings = Settings(_env_file=None, search_cache_size=10, search_cache_max_bytes=2**20)
    service = SearchService(pool=None, embedder=None, settings=settings, metrics=Metrics())
    small = [SearchHit(id="1", content="x", metadata={}, score=1.0, similarity=1.0)]
    for i in range(50):
        service.result_cache[f"small{i}"] = small
    assert len(service.result_cache) == 10, "at most SEARCH_CACHE_SIZE entries"
    big = [
        SearchHit(id=str(i), content="y" * 20_000, metadata={"k": "z" * 1000}, score=0.5, similarity=0.5)
        for i in range(20)
    ]
    for i in range(5):
        service.result_cache[f"big{i}"] = big
    assert service.result_cache.currsize <= 2**20 and len(service.result_cache) <= 2, "at most SEARCH_CACHE_MAX_BYTES"


def _raw(port: int, head: bytes, chunks: list[bytes], pause: float = 0.0, read_timeout: float = 20.0):
    """Send a request head, then body chunks (with `pause` seconds between them) on a raw socket, stopping early if
    the server answers; returns (status, headers, body as JSON or None, seconds until the answer, bytes sent)."""
    import socket
    import time

    started = time.perf_counter()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        for chunk in chunks:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            time.sleep(pause)
        sock.setblocking(True)
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
        took = time.perf_counter() - started
        head_text, _, rest = answer.partition(b"\r\n\r\n")
        lines = head_text.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(rest) < int(headers.get("content-length", 0)):
            more = sock.recv(65536)
            if not more:
                break
            rest += more
    body = None
    try:
        body = json.loads(rest.split(b"\r\n", 1)[-1] if headers.get("transfer-encoding") == "chunked" else rest)
    except ValueError:
        pass
    return status, headers, body, took, sent


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server):
    """Transfer-Encoding: chunked announces no length: the service counts what arrives and answers 413 as soon as it
    passes SEARCH_MAX_BODY_BYTES (256 KB), long before the 4 MB the client would send."""
    head = (
        b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b'{"query": "' + b"x" * 65_000
    chunks = [_chunk(piece)] + [_chunk(b"x" * 65_000) for _ in range(63)]
    status, headers, body, _, sent = _raw(server, head, chunks, pause=0.01)
    assert status == 413 and body and body["error"] == "too_large", (status, body)
    assert sent < 1_500_000, f"the client could send {sent:,} bytes before the 413"


def test_a_write_without_the_key_is_refused_before_its_body_is_read(server):
    """POST /documents without the key: 401 from the headers alone, while the client is still sending its body."""
    head = (
        b"POST /documents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    status, headers, body, _, sent = _raw(server, head, [_chunk(b" " * 1000) for _ in range(200)], pause=0.01)
    assert status == 401 and body and body["error"] == "unauthorized", (status, body)
    assert sent < 150_000, f"{sent:,} bytes were sent before the 401"


def test_a_body_that_stops_arriving_is_answered_408():
    """A client that sends part of its body and then nothing: 408 after SEARCH_BODY_TIMEOUT, not an open connection
    held forever."""
    with database.temporary_database("body_timeout") as url:

        async def seed():
            conn = await database.connect(url)
            await clone_corpus(conn, limit=20)
            await conn.close()

        asyncio.run(seed())
        app = create_app(database_url=url, settings=Settings(_env_file=None, search_body_timeout=1.0))
        with uvicorn_in_thread(app, log_level="error") as port:
            head = (
                b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n"
            )
            status, headers, body, took, _ = _raw(port, head, [b'{"query": "va'], read_timeout=10)
    assert status == 408 and body and body["error"] == "timeout", (status, body)
    assert took < 5, f"answered after {took:.1f} s with a 1 s body timeout"


def test_pooled_connections_hold_no_session_state_between_requests():
    """Why the service may skip asyncpg's reset query: after searches in every mode (SET LOCAL ef_search inside the
    hybrid and rrf transactions), a document write and failures, each pooled connection is back to the session the
    pool opened — same settings, no open transaction, cursor, advisory lock, listener or temporary table."""
    with database.temporary_database("no_state") as url:

        async def scenario():
            await served_table(url, 200)
            app = create_app(database_url=url, settings=Settings(_env_file=None))
            async with app.router.lifespan_context(app):
                pool = app.state.service.pool

                async def session(connection) -> dict:
                    # pgvector's own settings (hnsw.*) are listed once its library is loaded in the backend
                    await connection.execute("SELECT '[1]'::vector")
                    return {
                        "settings": dict(
                            await connection.fetch(
                                "SELECT name, setting FROM pg_settings WHERE source IN ('session', 'client')"
                            )
                        ),
                        "cursors": await connection.fetchval("SELECT count(*) FROM pg_cursors"),
                        "locks": await connection.fetchval(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                        ),
                        "channels": await connection.fetchval("SELECT count(*) FROM pg_listening_channels()"),
                        "temp": await connection.fetchval(
                            "SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND pg_table_is_visible(oid)"
                        ),
                        "in_transaction": connection.is_in_transaction(),
                    }

                async with pool.acquire() as connection:
                    fresh = await session(connection)
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    for mode in ("vector", "hybrid", "rrf"):
                        for query in ("vacuum a table", "create an index", "json operators"):
                            response = await client.post("/search", params={"mode": mode}, json={"query": query})
                            assert response.status_code == 200, response.text
                    await client.post("/documents", json={"content": "a new note about vacuum"})
                    await client.post("/search", params={"filter": "{bad"}, json={"query": "x"})
                for _ in range(pool.get_size()):
                    async with pool.acquire() as connection:
                        assert await session(connection) == fresh
                assert fresh["settings"].get("hnsw.iterative_scan") == "relaxed_order", fresh

        asyncio.run(scenario())
