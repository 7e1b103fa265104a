"""How the search service is served: uvicorn with the course's limits (`make serve`, `python -m course serve`, tests).

uvicorn's defaults accept a request head (request line and headers) of up to 16 KiB and answer a longer one with a
plain-text 400. The limit here is larger than the app's own (an 8 KiB URL, 16 KiB of headers: course.web.guard), so
anything a client might plausibly send gets the service's JSON 414 or 431, and only a head past 64 KiB is cut off
by the server itself, at once, before the app sees it.
"""

from __future__ import annotations

import argparse
from typing import Any

#: uvicorn.Config options every way of serving the service shares.
SERVER_OPTIONS: dict[str, Any] = {
    "h11_max_incomplete_event_size": 64 * 1024,  # longest request head read before the server refuses it
    "timeout_keep_alive": 5,  # an idle keep-alive connection is closed after this many seconds
    "timeout_graceful_shutdown": 10,  # on stop, requests in flight get this long to finish
    "server_header": False,  # no `server: uvicorn` on every answer
}


def main(argv: list[str] | None = None) -> int:
    """`python -m course serve [--target solutions|labs] [--host H] [--port P]`: the service on HOST:PORT."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m course serve", description="serve the search API")
    parser.add_argument("--target", default="solutions", choices=["solutions", "labs"], help="whose Objective 6")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(f"{args.target}.objective6:app", host=args.host, port=args.port, **SERVER_OPTIONS)
    return 0
