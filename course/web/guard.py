"""The request guard: URL and body limits enforced before a request is read, and security headers on every
response."""

from __future__ import annotations

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


class Guard:
    """Pure ASGI middleware: refuses URLs over `max_url_bytes` (414) and bodies larger than `max_body_bytes` (413)
    before they are read, and adds SECURITY_HEADERS to every response. (Pure ASGI, not BaseHTTPMiddleware: it adds
    no task per request.)"""

    #: Longest URL (path and query string) accepted; longer ones get a 414 (a filter is at most a few hundred bytes)
    max_url_bytes = 8192

    def __init__(self, app, max_body_bytes: int, on_error):
        self.app, self.max_body_bytes, self.on_error = app, max_body_bytes, on_error

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
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            response = self.on_error(
                413, "too_large", f"The request body is larger than {self.max_body_bytes:,} bytes."
            )
            return await response(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)
