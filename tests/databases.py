"""Database helpers only the tests need (the runtime's throw-away databases are course.database's)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from course import database


@contextlib.asynccontextmanager
async def temporary_connection(prefix: str = "course_tmp") -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection to a fresh database that is dropped afterwards."""
    with database.temporary_database(prefix) as url:
        conn = await database.connect(url)
        try:
            yield conn
        finally:
            await conn.close()
