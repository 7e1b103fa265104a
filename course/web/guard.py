"""The request guard: URL and body limits on the bytes that arrive (whatever the headers announce, chunked bodies
included), a time limit on reading a body, writes authenticated before their body is read, and security headers on
every response."""

from __future__ import annotations

import asyncio
import secrets

from starlette.exceptions import HTTPException

#: Headers on every response: no MIME sniffing, no framing, no referrer, and only this origin's scripts and styles
#: (the search page and /docs use inline code and assets served from here, never a CDN).
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:",
    ),
]


def key_matches(headers: list[tuple[bytes, bytes]], key: str) -> bool:
    """Whether a request's `Authorization: Bearer <key>` or `X-API-Key: <key>` is `key` (compared in constant time)."""
    found = dict(headers)
    authorization = found.get(b"authorization", b"")
    given = authorization[7:].strip() if authorization[:7].lower() == b"bearer " else found.get(b"x-api-key", b"")
    return secrets.compare_digest(given, key.encode())


class BodyTooLarge(HTTPException):
    """More body bytes arrived than the limit allows (an HTTPException: FastAPI passes those on while reading a body,
    where it would turn any other error into a 400)."""

    def __init__(self, limit: int):
        super().__init__(413, f"The request body is larger than {limit:,} bytes.", headers={"Connection": "close"})


class BodyTimeout(HTTPException):
    """The client stopped sending its body."""

    def __init__(self, seconds: float):
        super().__init__(
            408, f"The request body stopped arriving (nothing for {seconds:g} s).", headers={"Connection": "close"}
        )


class Guard:
    """Pure ASGI middleware. Refuses URLs over `max_url_bytes` (414) and headers over `max_header_bytes` (431);
    counts the body bytes as they arrive and stops at `max_body_bytes` (413: a Content-Length over the limit is
    refused before anything is read, and a chunked body as soon as it passes it); gives a client `body_timeout`
    seconds for each piece of its body (408); refuses a write to one of `write_paths` without `write_key` (401)
    before reading its body; and adds SECURITY_HEADERS to every response. (Pure ASGI, not BaseHTTPMiddleware: it
    adds no task per request.)"""

    #: Longest URL (path and query string) accepted; longer ones get a 414 (a filter is at most a few hundred bytes)
    max_url_bytes = 8192
    #: Most header bytes (names and values) accepted; more get a 431. The server refuses anything past
    #: course.web.serve's limit on the request head before the app sees it.
    max_header_bytes = 16384

    def __init__(
        self,
        app,
        max_body_bytes: int,
        on_error,
        body_timeout: float = 10.0,
        write_key: str | None = None,
        write_paths: tuple[str, ...] = ("/documents",),
    ):
        self.app, self.max_body_bytes, self.on_error = app, max_body_bytes, on_error
        self.body_timeout, self.write_key, self.write_paths = body_timeout, write_key, write_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)

        if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > self.max_url_bytes:
            response = self.on_error(414, "too_large", f"The URL is longer than {self.max_url_bytes:,} bytes.")
            return await response(scope, receive, send_with_headers)
        headers = scope.get("headers") or []
        if sum(len(name) + len(value) for name, value in headers) > self.max_header_bytes:
            response = self.on_error(
                431, "too_large", f"The request's headers are larger than {self.max_header_bytes:,} bytes."
            )
            return await response(scope, receive, send_with_headers)
        if (
            self.write_key is not None
            and scope.get("method") == "POST"
            and scope.get("path") in self.write_paths
            and not key_matches(headers, self.write_key)
        ):
            response = self.on_error(
                401,
                "unauthorized",
                "Writes need the service's API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
                headers={"WWW-Authenticate": "Bearer"},
            )
            return await response(scope, receive, send_with_headers)
        too_large = f"The request body is larger than {self.max_body_bytes:,} bytes."
        length = dict(headers).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return await self.on_error(413, "too_large", too_large)(scope, receive, send_with_headers)

        received, body_done = 0, False

        async def counted_receive():
            # BodyTooLarge and BodyTimeout are HTTPExceptions: the app's handlers answer them (413, 408) wherever
            # the body is read, FastAPI's own body parsing included
            nonlocal received, body_done
            if body_done:  # after the body: the app may wait for the disconnect as long as it likes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                raise BodyTimeout(self.body_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, counted_receive, send_with_headers)
