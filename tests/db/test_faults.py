"""app.db.faults: which database errors mean 'unavailable' (503), in every wrapping they come in."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.util import greenlet_spawn

from app.core.config import Settings
from app.db.faults import (
    DBAPI_ERROR,
    DatabaseNotAnswering,
    is_disconnect,
    is_unavailable,
    sqlstate,
)

# A server restarting, shutting down, ending sessions or refusing them; and lost sockets.
SESSION_ENDED: list[Exception] = [
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("terminating connection due to crash of another"),
    asyncpg.exceptions.IdleSessionTimeoutError("terminating connection due to idle timeout"),
    asyncpg.exceptions.PostgresConnectionError("connection exception"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
    asyncpg.exceptions.ConnectionFailureError("connection failure"),
    asyncpg.exceptions.ClientCannotConnectError("cannot connect"),
    asyncpg.exceptions.ConnectionRejectionError("rejected"),
    asyncpg.exceptions.ProtocolViolationError("protocol violation"),
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
    ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(32, "Broken pipe"),
]
NOT_TAKING_SESSIONS: list[Exception] = [
    asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
]
TIMED_OUT: list[Exception] = [
    TimeoutError(),
    DatabaseNotAnswering("the database is not answering"),
]
# The client's data, a bug or a misconfiguration: not the server being away.
OTHER: list[Exception] = [
    asyncpg.exceptions.UniqueViolationError("duplicate key"),
    asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax"),
    asyncpg.exceptions.UndefinedTableError('relation "x" does not exist'),
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.InvalidCatalogNameError('database "x" does not exist'),
    asyncpg.exceptions.InvalidPasswordError("password authentication failed"),
    ValueError("a bug"),
    KeyError("a bug"),
]


def raw(error: Exception) -> Exception:
    return error


def adapted(error: Exception) -> Exception:
    """As SQLAlchemy's adapter raises it when a pool checkout connects (the hot-read path)."""
    try:
        raise DBAPI_ERROR(str(error), error) from error
    except DBAPI_ERROR as translated:
        return translated


def wrapped(kind: type[sa_exc.DBAPIError]) -> Callable[[Exception], Exception]:
    def wrap(error: Exception) -> Exception:
        """As an ORM route sees it: SQLAlchemy's wrapper around the adapter's error."""
        inner = adapted(error)
        try:
            raise kind("SELECT 1", {}, inner) from inner  # type: ignore[arg-type]
        except sa_exc.DBAPIError as outer:
            return outer

    return wrap


def from_checkout_hook(error: Exception) -> Exception:
    """As a checkout hook raises it: a DisconnectionError caused by the driver's error."""
    try:
        raise sa_exc.DisconnectionError("pre-ping failed") from error
    except sa_exc.DisconnectionError as outer:
        return outer


WRAPPINGS = [
    raw,
    adapted,
    wrapped(sa_exc.DBAPIError),
    wrapped(sa_exc.OperationalError),
    wrapped(sa_exc.InterfaceError),
]
IDS = ["raw", "adapter", "DBAPIError", "OperationalError", "InterfaceError"]


@pytest.mark.parametrize("wrap", WRAPPINGS, ids=IDS)
@pytest.mark.parametrize(
    "error", SESSION_ENDED + NOT_TAKING_SESSIONS + TIMED_OUT, ids=lambda e: repr(e)[:40]
)
def test_a_server_away_is_unavailable(
    wrap: Callable[[Exception], Exception], error: Exception
) -> None:
    assert is_unavailable(wrap(error))


# SQLAlchemy's InterfaceError is left out: it means the driver interface failed, so whatever it
# wraps it counts as unavailable (it never wraps a constraint violation).
@pytest.mark.parametrize("wrap", WRAPPINGS[:-1], ids=IDS[:-1])
@pytest.mark.parametrize("error", OTHER, ids=lambda e: repr(e)[:40])
def test_anything_else_is_not_unavailable(
    wrap: Callable[[Exception], Exception], error: Exception
) -> None:
    assert not is_unavailable(wrap(error))


@pytest.mark.parametrize("error", SESSION_ENDED, ids=lambda e: repr(e)[:40])
def test_a_session_ended_is_a_disconnect_in_any_wrapping(error: Exception) -> None:
    for wrap in (*WRAPPINGS, from_checkout_hook):
        assert is_disconnect(wrap(error)), wrap


@pytest.mark.parametrize("error", NOT_TAKING_SESSIONS + TIMED_OUT + OTHER, ids=repr)
def test_a_refused_session_or_a_timeout_is_not_a_disconnect(error: Exception) -> None:
    """No retry of a read that only timed out (it would double the wait), nor of a refusal."""
    assert not is_disconnect(adapted(error))


def test_sqlalchemy_own_errors() -> None:
    assert is_unavailable(sa_exc.TimeoutError("QueuePool limit reached"))
    assert is_unavailable(sa_exc.DisconnectionError("the connection was closed"))
    assert is_unavailable(from_checkout_hook(TimeoutError()))
    assert not is_unavailable(sa_exc.InvalidRequestError("a misuse"))
    assert not is_unavailable(sa_exc.NoResultFound())


def test_sqlstate_is_read_through_the_wrappings() -> None:
    error = asyncpg.exceptions.UniqueViolationError("duplicate key")
    assert sqlstate(wrapped(sa_exc.IntegrityError)(error)) == "23505"
    assert sqlstate(adapted(error)) == "23505"
    assert sqlstate(ValueError()) == ""


async def test_a_server_error_at_connect_comes_as_the_adapters_error(settings: Settings) -> None:
    """The connect of a pool checkout raises SQLAlchemy's adapter `Error`, an internal class
    (DBAPI_ERROR): this fails if an upgrade moves or renames it. A role allowed no connection
    gets 53300 at connect, like a server that is full."""
    role = f"catalog_full_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(str(settings.database_url))
    try:
        async with admin.begin() as connection:
            await connection.execute(
                text(f"CREATE ROLE {role} LOGIN PASSWORD 'refused' CONNECTION LIMIT 0")
            )
        url = make_url(str(settings.database_url)).set(username=role, password="refused")
        engine = create_async_engine(url)
        try:
            with pytest.raises(DBAPI_ERROR) as raised:
                await greenlet_spawn(engine.sync_engine.raw_connection)
            assert not isinstance(raised.value, (sa_exc.SQLAlchemyError, asyncpg.PostgresError))
            assert sqlstate(raised.value) == "53300"
            assert is_unavailable(raised.value)
        finally:
            await engine.dispose()
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f"DROP ROLE IF EXISTS {role}"))
        await admin.dispose()
