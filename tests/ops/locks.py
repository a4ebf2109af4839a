"""A row lock the test holds, so a server's PATCH of that row is slow for as long as it wants."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from app.core.config import Settings

WAIT_TIMEOUT = 20.0


def asyncpg_dsn(settings: Settings) -> str:
    return str(settings.database_url).replace("postgresql+asyncpg://", "postgresql://", 1)


class RowLock:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def wait_for_waiters(self, count: int = 1) -> None:
        """Until `count` other sessions of this database wait on a lock (bounded)."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        while time.monotonic() < deadline:
            # Inside a transaction the statistics views are a snapshot taken at first read.
            await self.connection.execute("SELECT pg_stat_clear_snapshot()")
            if await self.connection.fetchval(query) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"no session waited on the lock within {WAIT_TIMEOUT}s")

    async def release(self) -> None:
        if self.connection.is_in_transaction():
            await self.connection.execute("ROLLBACK")


@asynccontextmanager
async def product_row_lock(settings: Settings, product_id: int) -> AsyncIterator[RowLock]:
    """BEGIN; SELECT ... FOR UPDATE on the product; rolled back on release or exit."""
    connection = await asyncpg.connect(asyncpg_dsn(settings), timeout=10)
    try:
        await connection.execute("BEGIN")
        locked = await connection.fetchval(
            "SELECT id FROM products WHERE id = $1 FOR UPDATE", product_id
        )
        assert locked == product_id
        lock = RowLock(connection)
        try:
            yield lock
        finally:
            await lock.release()
    finally:
        await connection.close(timeout=10)
