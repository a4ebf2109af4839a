"""Database access: one transaction per request, and the one way to borrow a raw asyncpg
connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.faults import is_disconnect, is_unavailable
from app.db.internals import greenlet_spawn, invalidate_since


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's transaction: committed before the response is sent, rolled back on error.

    Must be used with `Depends(..., scope="function")` (see `app.api.deps.SessionDep`): with the
    default request scope FastAPI runs the code after `yield` once the response has gone out,
    and a failed commit would still have answered 201.
    """
    async with transaction(request.app.state.sessionmaker) as session:
        yield session


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits when the block ends and rolls back on any error."""
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


@asynccontextmanager
async def read_connection(
    engine: AsyncEngine, *, discard_on_error: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection used through asyncpg directly: the one way the service borrows one.

    No ORM, no explicit transaction: one round trip per query. The connection comes from the
    engine's SQLAlchemy pool (same limits, checkout ping, database watch and metrics) and goes
    back to it afterwards. It is taken from the pool itself rather than through
    `engine.connect()`, whose Connection wrapper cost a third of the time of a primary-key read;
    and this is a plain context manager rather than a yield dependency, whose exit-stack
    machinery costs more than the query on this path.

    `discard_on_error`: for a caller that may leave the connection mid-query or inside a
    transaction of its own (the export's snapshot), any error discards it instead of pooling it
    again.
    """
    pooled = await greenlet_spawn(engine.sync_engine.raw_connection)
    driver = pooled.driver_connection
    assert driver is not None, "a checked-out connection has a driver connection"
    try:
        yield driver
    except BaseException as error:
        if discard_on_error:
            # Without the error: it is the caller's (a deadline passed, say), and the database
            # watch would take a timeout passed here for a silent server.
            await greenlet_spawn(pooled.invalidate)
        elif not isinstance(error, Exception):  # cancelled
            await greenlet_spawn(pooled.close)
        elif is_disconnect(error):
            # Dropped with the ones opened before it, as SQLAlchemy's own Connection does on a
            # disconnect: after a restart they are all dead (replaced at their next checkout).
            await greenlet_spawn(invalidate_since, engine.sync_engine.pool, pooled, error)
        elif is_unavailable(error):  # timed out, say: this one is dropped, the others kept
            await greenlet_spawn(pooled.invalidate, error)
        else:
            await greenlet_spawn(pooled.close)
        raise
    await greenlet_spawn(pooled.close)


async def transaction_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session's transaction (for COPY and bulk statements),
    not a borrowed one: it stays the session's, committed or rolled back with it.

    SQLAlchemy's asyncpg adapter sends BEGIN with its first statement: run one through the
    session before using this, or what runs here is outside the transaction.
    """
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if not isinstance(driver, asyncpg.Connection) or not driver.is_in_transaction():
        raise RuntimeError("no transaction began on the session's connection")
    return driver


T = TypeVar("T")


async def run_read(engine: AsyncEngine, read: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`read` on a pooled connection; once more on another if that one turned out broken.

    After the server restarts or ends backends, a pooled connection can look alive until its
    first statement fails (no ping vouched for it, see app.db.engine). A read may safely run
    again; a timeout is not retried, it would only double the wait.
    """
    try:
        async with read_connection(engine) as connection:
            return await read(connection)
    except Exception as error:
        if not is_disconnect(error):
            raise
    async with read_connection(engine) as connection:
        return await read(connection)
