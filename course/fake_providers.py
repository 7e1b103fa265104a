"""A real HTTP server on 127.0.0.1 that speaks the OpenAI and Gemini embedding wire formats, for tests and checks.

    with FakeProviderServer() as server:
        embedder = OpenAIEmbedder(base_url=server.openai_base_url, model="text-embedding-ada-002", api_key="sk-test")
        server.script(429, 429)          # the next two requests are rate-limited, then normal service resumes
        await embedder.embed(["hello"])
        server.requests                  # every request received: path, headers, JSON body

Vectors are the hashing embedder's (deterministic), so results can be recomputed independently. Responses follow
the providers' documented shapes, including error bodies, Retry-After and (for OpenAI) shuffled `data` order.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from course.embeddings import HashingEmbedder


@dataclass
class Step:
    """What the server does with one request: an HTTP status (200 = normal), optional Retry-After, or a delay.

    For fault drills: `error` adds fields to the provider's error object (OpenAI `code`, Gemini `details`);
    `headers` adds response headers (`retry-after-ms`); `mutate` rewrites a normal 200 payload (drop an index, put
    a NaN in a vector); `raw` replaces the whole body with these bytes (HTML, truncated JSON); `trickle` sends the
    body a few bytes at a time with this many seconds between them."""

    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    body: Any = None
    error: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    mutate: Callable[[dict[str, Any]], Any] | None = None
    raw: bytes | None = None
    trickle: float = 0.0


class FakeProviderServer:
    def __init__(self, dimensions: int = 1536, shuffle: bool = True):
        self.dimensions = dimensions
        self.shuffle = shuffle
        self.requests: list[dict[str, Any]] = []
        self._steps: list[Step] = []
        self._lock = threading.Lock()
        self._embedder = HashingEmbedder()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- control ------------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def gemini_base_url(self) -> str:
        return f"{self.base_url}/v1beta"

    def script(self, *steps: int | Step) -> None:
        """Queue behaviours for the next requests (ints are HTTP statuses); afterwards requests succeed."""
        with self._lock:
            self._steps.extend(s if isinstance(s, Step) else Step(status=s) for s in steps)

    def fail_always(self, status: int = 503, retry_after: str | None = "7") -> None:
        with self._lock:
            self._steps = [Step(status, retry_after)] * 10_000

    def reset(self) -> None:
        with self._lock:
            self._steps.clear()
            self.requests.clear()

    def vectors(self, texts: list[str]) -> list[list[float]]:
        """The vectors this server returns for `texts` (before any client-side normalisation)."""
        return [v[: self.dimensions] for v in self._embedder.embed_sync(texts)]

    def __enter__(self) -> FakeProviderServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    start = __enter__

    def stop(self) -> None:
        self.__exit__()

    # -- HTTP ---------------------------------------------------------------------------------------------------------
    def _next_step(self) -> Step:
        with self._lock:
            return self._steps.pop(0) if self._steps else Step()

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                with server._lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "json": body})
                step = server._next_step()
                if step.delay:
                    time.sleep(step.delay)
                if self.path.startswith("/v1/embeddings"):
                    self._openai(step, body)
                elif self.path.startswith("/v1beta/models/") and self.path.endswith(":batchEmbedContents"):
                    self._gemini(step, body)
                else:
                    self._send(404, {"error": {"message": f"Unknown path {self.path}", "code": 404}})

            def _send(
                self, status: int, payload: Any, retry_after: str | None = None, step: Step | None = None
            ) -> None:
                step = step or Step()
                if status == 200 and step.mutate is not None:
                    payload = step.mutate(payload)
                data = step.raw if step.raw is not None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "text/html" if step.raw is not None else "application/json")
                    self.send_header("content-length", str(len(data)))
                    if retry_after is not None:
                        self.send_header("retry-after", retry_after)
                    for name, value in (step.headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    if step.trickle:
                        for i in range(0, len(data), 64):
                            self.wfile.write(data[i : i + 64])
                            self.wfile.flush()
                            time.sleep(step.trickle)
                    else:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def _openai(self, step: Step, body: Any) -> None:
                if step.status != 200:
                    kinds = {400: "invalid_request_error", 401: "invalid_api_key", 429: "rate_limit_exceeded"}
                    error = {
                        "message": step.body or f"Simulated HTTP {step.status}",
                        "type": kinds.get(step.status, "server_error"),
                        "param": None,
                        "code": kinds.get(step.status),
                        **(step.error or {}),
                    }
                    return self._send(step.status, {"error": error}, step.retry_after, step)
                if not self.headers.get("authorization", "").startswith("Bearer "):
                    return self._send(
                        401, {"error": {"message": "You didn't provide an API key.", "type": "invalid_request_error"}}
                    )
                texts = body.get("input") if isinstance(body, dict) else None
                if isinstance(texts, str):
                    texts = [texts]
                if not texts or not all(isinstance(t, str) and t for t in texts):
                    return self._send(
                        400,
                        {
                            "error": {
                                "message": "'input' must be a non-empty string or array of strings",
                                "type": "invalid_request_error",
                            }
                        },
                    )
                data = [
                    {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(server.vectors(texts))
                ]
                if server.shuffle:
                    random.shuffle(data)  # the API does not promise order; clients must sort by index
                usage = sum(len(t.split()) for t in texts)
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": body.get("model"),
                        "usage": {"prompt_tokens": usage, "total_tokens": usage},
                    },
                    step=step,
                )

            def _gemini(self, step: Step, body: Any) -> None:
                if step.status != 200:
                    statuses = {
                        400: "INVALID_ARGUMENT",
                        403: "PERMISSION_DENIED",
                        429: "RESOURCE_EXHAUSTED",
                        503: "UNAVAILABLE",
                    }
                    error = {
                        "code": step.status,
                        "message": step.body or f"Simulated HTTP {step.status}",
                        "status": statuses.get(step.status, "INTERNAL"),
                        **(step.error or {}),
                    }
                    return self._send(step.status, {"error": error}, step.retry_after, step)
                if not self.headers.get("x-goog-api-key"):
                    return self._send(
                        403,
                        {
                            "error": {
                                "code": 403,
                                "message": "Method doesn't allow unregistered callers.",
                                "status": "PERMISSION_DENIED",
                            }
                        },
                    )
                requests = body.get("requests") if isinstance(body, dict) else None
                if not requests or len(requests) > 100:
                    return self._send(
                        400,
                        {
                            "error": {
                                "code": 400,
                                "message": "requests must hold 1 to 100 items",
                                "status": "INVALID_ARGUMENT",
                            }
                        },
                    )
                texts = [r["content"]["parts"][0]["text"] for r in requests]
                size = requests[0].get("outputDimensionality") or 3072
                vectors = [[x * 3.0 for x in v[:size]] for v in server.vectors(texts)]  # not normalised below 3072
                self._send(200, {"embeddings": [{"values": v} for v in vectors]}, step=step)

        return Handler
