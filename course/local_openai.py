"""The course's local model behind an OpenAI-compatible endpoint on 127.0.0.1, as Ollama and LM Studio serve theirs.

    with LocalOpenAIServer() as server:       # POST {server.base_url}/embeddings, OpenAI's wire format
        ...                                    # the search service's httpx client embeds every query through it
                                               # (server.model: the model it serves and the name it answers to)

So the learner's httpx client (Objective 6) is the service's main path with no API key: pointed at this server by
default, at OpenAI or any compatible server with OPENAI_BASE_URL. It serves the configured local model
(EMBEDDING_PROVIDER minilm, the default, or local: WordLlama); answers are that model's native vectors (384 or 256
numbers, unit length), in OpenAI's shape: `data` items with `index` and `embedding`, `model`, `usage`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from course.embeddings import LocalEmbedder, estimate_tokens, get_embedder
from course.settings import get_settings

#: The providers whose model runs in this process and so can be served here.
LOCAL_PROVIDERS = ("minilm", "local")


class LocalOpenAIServer:
    """A threaded HTTP server on a free 127.0.0.1 port answering POST /v1/embeddings with a local model: the one
    EMBEDDING_PROVIDER names if it is local, else the default (MiniLM). `model` is the name it answers to, and the
    model id the rows it embedded record."""

    def __init__(self, provider: str | None = None) -> None:
        provider = provider or get_settings().embedding_provider
        embedder = get_embedder(provider if provider in LOCAL_PROVIDERS else LOCAL_PROVIDERS[0])
        assert isinstance(embedder, LocalEmbedder)
        self.embedder = embedder
        self.model: str = embedder.model_id
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="local-openai", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> LocalOpenAIServer:
        # the model is loaded before the first request, not by it: a cold MiniLM costs ~1 s, which the first searches
        # would otherwise spend inside their deadline (at concurrency 8 on a fresh `make serve`, all of them did)
        self.embedder.embed_native(["warm up"])
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LocalOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def answer(self, body: Any) -> tuple[int, dict[str, Any]]:
        """(status, JSON) for one request body, with OpenAI's error shape for a request it cannot serve."""
        if not isinstance(body, dict) or not isinstance(body.get("input"), (str, list)):
            return 400, _error("`input` must be a string or an array of strings.")
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            return 400, _error("every input must be a non-empty string.")
        if body.get("model", self.model) != self.model:
            return 404, _error(f"The model {body.get('model')!r} does not exist; this server has {self.model!r}.")
        try:
            vectors = self.embedder.embed_native(texts)
        except ValueError as exc:
            return 400, _error(str(exc))
        tokens = sum(estimate_tokens(t) for t in texts)
        return 200, {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
            "model": self.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connection
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args):  # the service logs what matters
                pass

            def do_POST(self):
                if self.path.rstrip("/") != "/v1/embeddings":
                    return self._send(404, _error(f"No route {self.path}; POST /v1/embeddings."))
                length = int(self.headers.get("content-length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    return self._send(400, _error("The body is not JSON."))
                self._send(*server.answer(body))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}
