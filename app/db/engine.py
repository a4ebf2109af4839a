"""The one pooled asyncpg engine and its sessionmaker, built from settings by the lifespan."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings
from app.db.faults import PING_FAILURES, is_disconnect
from app.db.internals import await_


def build_engine(settings: Settings, *, url: str | None = None) -> AsyncEngine:
    statement_timeout_s = settings.db_statement_timeout_ms / 1000
    engine = create_async_engine(
        url or str(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        # Pre-ping is done by the checkout hook below, with a timeout of its own.
        pool_pre_ping=False,
        connect_args={
            "timeout": settings.db_connect_timeout,
            # Client-side backstop a little past the server's statement_timeout.
            "command_timeout": statement_timeout_s + 5 if statement_timeout_s else None,
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "catalog-service",
            },
        },
    )
    if settings.db_pool_pre_ping:
        _ping_on_checkout(engine, settings.db_ping_timeout, settings.db_ping_idle_seconds)
    _broken_is_a_disconnect(engine)
    return engine


def _broken_is_a_disconnect(engine: AsyncEngine) -> None:
    """Let SQLAlchemy treat every `is_disconnect` error as one.

    It knows most, not the InternalClientError of a connection the server has just closed;
    a disconnect drops the connection and those opened before it instead of pooling them again.
    """

    @event.listens_for(engine.sync_engine, "handle_error")
    def broken(context: Any) -> None:
        if is_disconnect(context.original_exception):
            context.is_disconnect = True


def _ping_on_checkout(engine: AsyncEngine, timeout: float, idle_seconds: float) -> None:
    """Check a pooled connection before use if it sat idle, giving up after `timeout` seconds.

    SQLAlchemy's own pre-ping waits as long as the driver's command timeout, so a database that
    stopped answering (rather than refusing) would hang every request. A failed ping discards
    the connection; the pool then opens a new one, bounded by the connect timeout.
    Like HikariCP's bypass window, a connection returned less than `idle_seconds` ago is not
    pinged again: under load that saves a round trip per request (a third of a hot read), and
    a connection that just worked is as good a sign of life as a ping. A database that goes
    silent while such connections are lent is noticed by app.db.watch instead, which aborts
    them; an aborted (closed) connection is never lent.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def remember_fresh(_dbapi_connection: Any, record: Any) -> None:
        # The connect itself was the sign of life. Pinging it anyway could fail a second time
        # in one checkout (the first ping failed, the server went on shutting down), and
        # SQLAlchemy then gives up with an InvalidRequestError that names no cause.
        record.info["fresh"] = True

    @event.listens_for(engine.sync_engine, "checkin")
    def remember_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the connection was closed")
        if record.info.pop("fresh", False):
            return
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is not None and time.monotonic() - checked_in_at < idle_seconds:
            return
        try:
            await_(dbapi_connection.driver_connection.fetchval("SELECT 1", timeout=timeout))
        except PING_FAILURES as error:
            # Abort the socket: a polite close would wait on the silent server too.
            dbapi_connection.driver_connection.terminate()
            raise DisconnectionError("pre-ping failed") from error


def build_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
