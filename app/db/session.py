"""Database access for requests: one transaction per request, and a lean read connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.util import greenlet_spawn

from app.db.faults import is_disconnect, is_unavailable


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's transaction: committed before the response is sent, rolled back on error.

    Must be used with `Depends(..., scope="function")` (see `app.api.deps.SessionDep`): with the
    default request scope FastAPI runs the code after `yield` once the response has gone out,
    and a failed commit would still have answered 201.
    """
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


@asynccontextmanager
async def read_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for hot reads, used through asyncpg directly.

    No ORM, no explicit transaction: one round trip per query. The connection comes from the
    same SQLAlchemy pool (same limits, checkout ping and metrics) and goes back to it
    afterwards. It is taken from the pool itself rather than through `engine.connect()`,
    whose Connection wrapper cost a third of the time of a primary-key read; and this is a
    plain context manager rather than a yield dependency, whose exit-stack machinery costs
    more than the query on this path.
    """
    pooled = await greenlet_spawn(engine.sync_engine.raw_connection)
    driver = pooled.driver_connection
    assert driver is not None, "a checked-out connection has a driver connection"
    try:
        yield driver
    except Exception as error:
        # A broken connection is dropped (this also returns its slot to the pool). Unless it
        # only timed out, so are the ones opened before it, as SQLAlchemy's own Connection
        # does on a disconnect: after a restart they are all dead (replaced at next checkout).
        if is_disconnect(error):
            await greenlet_spawn(engine.sync_engine.pool._invalidate, pooled, error)
        elif is_unavailable(error):
            await greenlet_spawn(pooled.invalidate, error)
        else:
            await greenlet_spawn(pooled.close)
        raise
    except BaseException:
        await greenlet_spawn(pooled.close)
        raise
    await greenlet_spawn(pooled.close)


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
