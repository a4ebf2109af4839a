"""Request-scoped database access: one transaction per request, and a lean read connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession


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


async def get_read_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for hot reads, used through asyncpg directly.

    No ORM, no explicit transaction: one round trip per query. The connection comes from the
    same SQLAlchemy pool (same limits, pre-ping and metrics) and goes back to it afterwards.
    """
    async with request.app.state.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        try:
            yield raw.driver_connection
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
            # The connection is broken: keep the pool from handing it out again.
            await connection.invalidate()
            raise
