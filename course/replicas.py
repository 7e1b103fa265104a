"""Where the service's reads go: hot standbys when there are any (balanced, skipped while down or too far behind),
else the primary; a read that must see a given write (read-your-writes) goes where that write has been replayed.

Writes always go to the primary's pool (the service's `pool`). Reads go through `Reads.run(work, within=seconds)`:
`work(conn)` runs on the least busy standby that can serve it, and a connection lost mid-read (a standby stopping, a
recovery conflict) is retried on the next node. Reads are idempotent, so a standby going away costs a retry, not an
error. With no standby usable the primary serves the read (libpq's `target_session_attrs=prefer-standby` does the
same); only when no node at all can serve it does the caller get the error (503 + Retry-After).

A monitor polls each standby every `interval` seconds: is it reachable, still in recovery, and how far its replay is
behind the primary (bytes of WAL, and seconds since it was last seen caught up: an upper bound on how stale its
answers can be). A standby more than `max_lag` seconds behind takes no reads until it catches up; a standby that went
away rejoins on the first poll that reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

log = logging.getLogger("course.replicas")
T = TypeVar("T")

#: A WAL position as PostgreSQL prints one (pg_lsn): two hexadecimal numbers (each at most 8 digits, so at most 17
#: characters; a longer number is past any real position, and is read as "every write so far").
LSN_PATTERN = re.compile(r"^[0-9A-Fa-f]+/[0-9A-Fa-f]+$")
LSN_MAX_CHARS = 17

#: The WAL position a request's reads must see (set from its X-Read-After-LSN header by the search routes' dependency,
#: course.web.app.read_after_write).
read_after: contextvars.ContextVar[str | None] = contextvars.ContextVar("read_after", default=None)

#: Failures after which the same read may be tried on another node: the node went away or cancelled the query
#: because of replay (a recovery conflict, SQLSTATE 40001 on a standby).
NODE_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InternalClientError,
    asyncpg.SerializationError,
)


def read_urls() -> list[str]:
    """The hot standbys the search service reads from: DATABASE_READ_URLS; else, on the embedded server, the running
    standbys of `python -m course cluster`; else none (the primary serves reads)."""
    from course import cluster, database
    from course.settings import get_settings

    settings = get_settings()
    if settings.database_read_urls:
        return settings.database_read_urls.split(",")
    return cluster.running_standby_urls() if database.is_embedded() else []


def lsn_value(lsn: str) -> int:
    """A pg_lsn as a byte position (for comparing and subtracting)."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass
class Node:
    """A standby as the monitor last saw it."""

    name: str
    pool: asyncpg.Pool
    reachable: bool = False
    in_recovery: bool = True
    replay_lsn: str | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    error: str | None = None
    in_flight: int = 0
    reads: int = 0
    checked_at: float = field(default_factory=time.monotonic)
    #: when a poll last found it caught up: it then held every write committed before that poll began
    caught_up_at: float | None = None

    def usable(self, max_lag: float) -> bool:
        return self.reachable and self.in_recovery and (self.lag_seconds is None or self.lag_seconds <= max_lag)

    def has_replayed(self, lsn: str) -> bool:
        return self.replay_lsn is not None and lsn_value(self.replay_lsn) >= lsn_value(lsn)

    def report(self, max_lag: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "taking_reads": self.usable(max_lag),
            "reachable": self.reachable,
            "replay_lsn": self.replay_lsn,
            "lag_bytes": self.lag_bytes,
            "lag_seconds": self.lag_seconds,
            "reads": self.reads,
            **({"error": self.error} if self.error else {}),
        }


class Reads:
    """The service's read path: `run(work)` on a standby (or the primary), and the monitor that keeps their state."""

    def __init__(
        self,
        primary: asyncpg.Pool,
        standbys: dict[str, asyncpg.Pool] | None = None,
        *,
        max_lag: float = 10.0,
        read_after_wait: float = 0.5,
        interval: float = 0.5,
    ):
        self.primary = primary
        self.nodes = [Node(name, pool) for name, pool in (standbys or {}).items()]
        self.max_lag, self.read_after_wait, self.interval = max_lag, read_after_wait, interval
        self.primary_lsn: str | None = None
        #: the WAL position of this process's last write: its own reads must see it (a result computed on a standby
        #: that has not replayed it would be cached as the answer, stale, until the cache entry expires)
        self.written: str | None = None
        #: the newest write position a client told us of (X-Read-After-LSN) or this process made
        self.noticed: str | None = None
        self.primary_reads = 0
        self._turn = 0
        self._monitor: asyncio.Task | None = None

    # --- the monitor ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Poll once (so the first search already knows which standbys are up), then keep polling in the background."""
        if self.nodes:
            await self.poll()
            self._monitor = asyncio.create_task(self._watch(), name="standby monitor")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 — the monitor must outlive any one failed poll
                log.exception("standby monitor: poll failed")

    async def _primary_position(self) -> str | None:
        """The primary's current WAL position (None if the server in its place is a standby); raises if unreachable."""
        async with self.primary.acquire(timeout=1) as conn:
            return await conn.fetchval(
                "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END", timeout=1
            )

    async def poll(self) -> None:
        """One look at the primary's WAL position and at every standby."""
        polled_at = time.monotonic()
        try:
            self.primary_lsn = await self._primary_position()
        except (*NODE_LOST, TimeoutError):
            self.primary_lsn = None
        await asyncio.gather(*(self._check(node, polled_at) for node in self.nodes))

    async def _check(self, node: Node, polled_at: float) -> None:
        try:
            async with node.pool.acquire(timeout=1) as conn:
                row = await conn.fetchrow(
                    "SELECT pg_is_in_recovery() AS in_recovery, pg_last_wal_replay_lsn()::text AS replay, "
                    "pg_last_wal_receive_lsn()::text AS received",
                    timeout=1,
                )
        except (*NODE_LOST, TimeoutError) as exc:
            if node.reachable:
                log.warning("standby %s is not reachable: %s", node.name, exc)
            node.reachable, node.error = False, type(exc).__name__
            return
        assert row is not None
        if not node.reachable:
            log.info("standby %s is reachable", node.name)
        node.reachable, node.error, node.checked_at = True, None, time.monotonic()
        node.in_recovery, node.replay_lsn = row["in_recovery"], row["replay"]
        # behind what: the primary's position when we know it, else what the standby has received but not replayed
        target = self.primary_lsn or row["received"]
        if node.replay_lsn is None or target is None:
            node.lag_bytes, node.lag_seconds = None, None
            return
        node.lag_bytes = max(0, lsn_value(target) - lsn_value(node.replay_lsn))
        # seconds behind: since the standby was last seen holding every write (not now() minus the last replayed
        # commit's time, which on an idle primary is minutes for a standby one housekeeping record behind)
        if node.lag_bytes == 0:
            node.caught_up_at, node.lag_seconds = polled_at, 0.0
        else:
            node.lag_seconds = round(time.monotonic() - (node.caught_up_at or polled_at), 3)

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await asyncio.gather(*(node.pool.close() for node in self.nodes), return_exceptions=True)

    # --- reads ----------------------------------------------------------------------------------------------------
    def wrote(self, lsn: str | None) -> None:
        """A write of this process ended at `lsn`: reads from now on must see it."""
        if lsn is not None and (self.written is None or lsn_value(lsn) > lsn_value(self.written)):
            self.written = lsn
        if lsn is not None and (self.noticed is None or lsn_value(lsn) > lsn_value(self.noticed)):
            self.noticed = lsn

    async def notice(self, lsn: str) -> tuple[str, bool]:
        """A client says a write ended at `lsn` (its X-Read-After-LSN). Returns the position its reads must see —
        `lsn`, or the primary's current position if `lsn` is past it (no write is there yet; a made-up value must
        not send this process's reads to the primary) — and whether that is news: a write this process did not make,
        newer than any it knew of, so results cached before it may be stale."""
        if self.primary_lsn is None or lsn_value(lsn) > lsn_value(self.primary_lsn):
            try:
                self.primary_lsn = await self._primary_position()
            except (*NODE_LOST, TimeoutError):
                pass  # the primary is away: the value holds for this request only
        if self.primary_lsn is not None and lsn_value(lsn) > lsn_value(self.primary_lsn):
            lsn = self.primary_lsn
        news = self.noticed is None or lsn_value(lsn) > lsn_value(self.noticed)
        if news and self.primary_lsn is not None:
            self.noticed = lsn
        return lsn, news

    def must_see(self) -> str | None:
        """The WAL position this read must see: the request's X-Read-After-LSN or this process's last write."""
        positions = [p for p in (read_after.get(), self.written) if p is not None]
        return max(positions, key=lsn_value) if positions else None

    def _candidates(self) -> list[Node]:
        """Usable standbys, least busy first (round robin among equals)."""
        usable = [n for n in self.nodes if n.usable(self.max_lag)]
        self._turn += 1
        usable = usable[self._turn % len(usable) :] + usable[: self._turn % len(usable)] if usable else []
        return sorted(usable, key=lambda n: n.in_flight)

    async def _replayed(self, node: Node, conn: asyncpg.Connection, lsn: str, wait: float) -> bool:
        """Whether `node` has replayed `lsn`, waiting up to `wait` seconds for it to get there."""
        if node.has_replayed(lsn):
            return True
        deadline = time.monotonic() + wait
        while True:
            current = await conn.fetchval("SELECT pg_last_wal_replay_lsn()::text", timeout=max(0.05, wait))
            node.replay_lsn = current
            if node.has_replayed(lsn) or time.monotonic() >= deadline:
                return node.has_replayed(lsn)
            await asyncio.sleep(0.005)

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]], *, within: float) -> T:
        """`work(conn)` on a standby that can serve it, else on the primary, within `within` seconds in all. A node
        lost mid-read is marked down and the read tried on the next; the last node's failure is raised."""
        deadline = time.monotonic() + within
        lsn = self.must_see()
        wait_until = time.monotonic() + self.read_after_wait  # one wait for a replay, shared by every standby tried
        failure: BaseException | None = None
        for node in self._candidates():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            node.in_flight += 1
            try:
                async with node.pool.acquire(timeout=left) as conn:
                    wait = max(0.0, min(wait_until - time.monotonic(), left))
                    if lsn is not None and not await self._replayed(node, conn, lsn, wait):
                        continue  # not there yet: another standby, or the primary, which has every write
                    result = await work(conn)
                    node.reads += 1
                    return result
            except NODE_LOST as exc:
                log.warning("standby %s lost a read (%s): trying the next node", node.name, type(exc).__name__)
                node.reachable, node.error, failure = False, type(exc).__name__, exc
            finally:
                node.in_flight -= 1
        left = deadline - time.monotonic()
        if left <= 0:
            raise failure or TimeoutError("no node answered within the deadline")
        async with self.primary.acquire(timeout=left) as conn:
            result = await work(conn)
        self.primary_reads += 1
        return result

    def health(self) -> dict[str, Any]:
        """What /healthz shows: each standby, whether it takes reads, and its lag."""
        return {
            "ready": True,
            "max_lag_seconds": self.max_lag,
            "primary_wal_lsn": self.primary_lsn,
            "reads_on_primary": self.primary_reads,
            "standbys": [node.report(self.max_lag) for node in self.nodes],
        }
