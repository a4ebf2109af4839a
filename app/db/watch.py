"""A watch on the database: notices a server that stopped answering, and aborts the pool.

A database can stop answering without closing its connections (a hung server, a network that
drops packets). A query already running then waits until the command timeout, and so does one
on a connection the pool lent without a ping: one returned less than DB_PING_IDLE_SECONDS ago
(app.db.engine), which under load saves a round trip on every request. The watch closes that
gap. Every DB_WATCH_INTERVAL_SECONDS it pings the server on a connection of its own; when the
ping gets no answer within DB_PING_TIMEOUT, or no connection reaches the server, it aborts
every connection of the pool, so the requests waiting on one get 503 now and later checkouts
connect anew (and are refused within DB_CONNECT_TIMEOUT while the server stays away).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.logging import get_logger
from app.db.bootstrap import asyncpg_dsn
from app.db.engine import PING_FAILURES

log = get_logger("app.db")
APPLICATION_NAME = "catalog-service-watch"


class DatabaseWatch:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.interval = settings.db_watch_interval_seconds
        self.ping_timeout = settings.db_ping_timeout
        self.connect_timeout = settings.db_connect_timeout
        self.dsn = asyncpg_dsn(engine.url.render_as_string(hide_password=False))
        self.pooled: weakref.WeakSet[asyncpg.Connection] = weakref.WeakSet()
        self.own: asyncpg.Connection | None = None
        event.listen(engine.sync_engine, "connect", self._remember)

    def _remember(self, dbapi_connection: Any, _record: Any) -> None:
        self.pooled.add(dbapi_connection.driver_connection)

    async def run(self) -> None:
        answering = True
        try:
            while True:
                await asyncio.sleep(self.interval)
                if await self.answers():
                    if not answering:
                        log.info("database answering again")
                    answering = True
                    continue
                aborted = self.abort_pool()
                if answering or aborted:  # one line per outage, not one a second
                    log.warning("database not answering: pool connections aborted", aborted=aborted)
                answering = False
        finally:
            self._drop_own()

    async def answers(self) -> bool:
        """Whether the server answers a ping in time, on the watch's connection or a new one.

        A ping that times out means no; an error may only mean that the watch's own connection
        was closed (by an administrator, an idle timeout), so a fresh one gets a second try.
        """
        for _ in range(2):
            fresh = self.own is None
            try:
                if self.own is None:
                    self.own = await asyncpg.connect(
                        self.dsn,
                        timeout=self.connect_timeout,
                        server_settings={"application_name": APPLICATION_NAME},
                    )
                await self.own.fetchval("SELECT 1", timeout=self.ping_timeout)
                return True
            except PING_FAILURES as error:
                # A TimeoutError (an OSError) is a server that does not answer.
                self._drop_own()
                if fresh or isinstance(error, TimeoutError):
                    return False
        return False

    def abort_pool(self) -> int:
        """Abort every open connection of the pool; how many there were."""
        alive = [connection for connection in self.pooled if not connection.is_closed()]
        for connection in alive:
            # Abort, not close: a polite close would wait on the silent server too.
            connection.terminate()
        return len(alive)

    def _drop_own(self) -> None:
        if self.own is not None:
            self.own.terminate()
            self.own = None
