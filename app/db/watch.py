"""A watch on the database: notices a server that stopped answering, and aborts the pool.

A database can stop answering without closing its connections (a hung server, a network that
drops packets). A query already running then waits until the command timeout, and so does one
on a connection the pool lent without a ping: one returned less than DB_PING_IDLE_SECONDS ago
(app.db.engine), which under load saves a round trip on every request. The watch closes that
gap. Every DB_WATCH_INTERVAL_SECONDS it pings the server on a connection of its own; when the
ping gets no answer within DB_PING_TIMEOUT, or no connection reaches the server, it aborts
every connection of the pool, so the requests waiting on one get 503 now and later checkouts
connect anew.

While the server is silent (the watch's ping or connect timed out, or a checkout's did) the
watch also holds the pool shut: a checkout or a connect fails at once with DatabaseNotAnswering
(503) instead of waiting DB_PING_TIMEOUT or DB_CONNECT_TIMEOUT of its own, and so do the
requests queued behind it for a pool slot. The next round that gets an answer (or a refusal,
which is quick anyway) opens it again. So a request sent to a silent server gets its 503
within max(DB_CONNECT_TIMEOUT, DB_WATCH_INTERVAL_SECONDS + DB_PING_TIMEOUT): 1.5 s by default.
"""

from __future__ import annotations

import asyncio
import enum
import weakref
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.logging import get_logger
from app.db.bootstrap import asyncpg_dsn
from app.db.faults import PING_FAILURES, DatabaseNotAnswering, is_timeout

log = get_logger("app.db")
APPLICATION_NAME = "catalog-service-watch"


class Answer(enum.Enum):
    ANSWERS = "answers"
    REFUSES = "refuses"  # an error, at once: connections fail fast without the watch's help
    SILENT = "silent"  # no answer in time


class DatabaseWatch:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.interval = settings.db_watch_interval_seconds
        self.ping_timeout = settings.db_ping_timeout
        self.connect_timeout = settings.db_connect_timeout
        self.dsn = asyncpg_dsn(engine.url.render_as_string(hide_password=False))
        self.pooled: weakref.WeakSet[asyncpg.Connection] = weakref.WeakSet()
        self.own: asyncpg.Connection | None = None
        self.silent = False
        self.include(engine)

    def include(self, engine: AsyncEngine) -> None:
        """Watch this engine's pool too (one server, several pools: the bulk pool)."""
        target = engine.sync_engine
        event.listen(target, "connect", self._remember)
        event.listen(target, "do_connect", self._connect)
        event.listen(target, "invalidate", self._invalidated)
        # Before the checkout ping, which would wait on the silent server.
        event.listen(target, "checkout", self._lend, insert=True)

    def _remember(self, dbapi_connection: Any, _record: Any) -> None:
        self.pooled.add(dbapi_connection.driver_connection)

    def _connect(
        self, dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> Any:
        self._refuse_if_silent()
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as error:
            if is_timeout(error):
                self.silent = True
            raise

    def _lend(self, _dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        self._refuse_if_silent()

    def _invalidated(
        self, _dbapi_connection: Any, _record: Any, error: BaseException | None
    ) -> None:
        # A checkout ping or a query that timed out: the server went silent, most likely.
        if error is not None and is_timeout(error) and not isinstance(error, DatabaseNotAnswering):
            self.silent = True

    def _refuse_if_silent(self) -> None:
        if self.silent:
            raise DatabaseNotAnswering("the database is not answering")

    async def run(self) -> None:
        answering = True
        try:
            # The first round at once: it opens the watch's own connection, so that a server
            # going silent is noticed after a ping timeout, not a connect timeout.
            while True:
                if await self.answers():
                    if not answering:
                        log.info("database answering again")
                    answering = True
                else:
                    aborted = self.abort_pool()
                    if answering or aborted:  # one line per outage, not one a second
                        log.warning(
                            "database not answering: pool connections aborted", aborted=aborted
                        )
                    answering = False
                await asyncio.sleep(self.interval)
        finally:
            self._drop_own()

    async def answers(self) -> bool:
        """Whether the server answers a ping in time; holds the pool shut while it is silent."""
        answer = await self.probe()
        self.silent = answer is Answer.SILENT
        return answer is Answer.ANSWERS

    async def probe(self) -> Answer:
        """A ping on the watch's connection or a new one.

        A ping that times out means silent; an error may only mean that the watch's own
        connection was closed (by an administrator, an idle timeout), so a fresh one gets a
        second try.
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
                return Answer.ANSWERS
            except PING_FAILURES as error:
                self._drop_own()
                if isinstance(error, TimeoutError):  # an OSError
                    return Answer.SILENT
                if fresh:
                    return Answer.REFUSES
        return Answer.REFUSES

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
