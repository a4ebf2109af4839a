"""What a database error means: a server that is down, restarting or silent, or something else.

The one classification every path uses: the problem handlers, the hot reads, the last-resort
handler of the request middleware, the read retry and the pool's disconnect hook. An error
counts by its whole cause chain, because the same fault arrives in several wrappings: raw from
asyncpg on the hot path, as SQLAlchemy's adapter error (PEP 249 `Error`, no SQLAlchemy or
asyncpg class) when a pool checkout connects, wrapped in `DBAPIError` on ORM routes, or as the
cause of a `DisconnectionError` raised by a checkout hook.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
from sqlalchemy import exc as sa_exc

from app.db.internals import ASYNCPG_ADAPTER_ERROR

# What asyncpg raises when a connection is broken: the server went away, restarted or ended the
# backend; a socket error or timeout; or, on a connection the server has just closed, a protocol
# still busy with the closing message (InternalClientError).
BROKEN_CONNECTION: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InternalClientError,
)
# A ping that fails in any of these ways, or with any error of the server's, discards its
# connection.
PING_FAILURES: tuple[type[Exception], ...] = (*BROKEN_CONNECTION, asyncpg.PostgresError)

# What a checkout raises when its connect fails with a server error, such as 57P03 while the
# server starts or stops: SQLAlchemy's adapter error (see app.db.internals), which subclasses
# neither SQLAlchemy's errors nor asyncpg's, so it needs a handler of its own.
DBAPI_ERROR: type[Exception] = ASYNCPG_ADAPTER_ERROR

# SQLSTATEs of a session the server ended or lost: connection exceptions (class 08), an
# administrator or crash shutdown, an idle-session timeout.
SESSION_ENDED_STATES = ("08", "57P01", "57P02", "57P05")
# ... and of a server that takes no new session for now: starting up or shutting down (57P03),
# or full (53300).
UNAVAILABLE_STATES = (*SESSION_ENDED_STATES, "57P03", "53300")

_MAX_CHAIN = 8


class DatabaseNotAnswering(TimeoutError):
    """Given at once, without trying, while the database watch holds the server silent."""


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it wraps (`DBAPIError.orig`, else `__cause__`), innermost last."""
    seen: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and len(seen) < _MAX_CHAIN and all(link is not s for s in seen):
        yield link
        seen.append(link)
        wrapped = link.orig if isinstance(link, sa_exc.DBAPIError) else None
        link = wrapped if isinstance(wrapped, BaseException) else link.__cause__


def sqlstate(error: BaseException) -> str:
    """The first SQLSTATE along the cause chain, or ''."""
    for link in causes(error):
        state = getattr(link, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
    return ""


def is_unavailable(error: BaseException) -> bool:
    """The database is down, restarting, refusing, full or silent: a 503, never a 500."""
    for link in causes(error):
        if isinstance(
            link,
            (
                *BROKEN_CONNECTION,
                sa_exc.TimeoutError,  # no pool slot in time
                sa_exc.DisconnectionError,
                sa_exc.InterfaceError,
            ),
        ):
            return True
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            return True
        state = getattr(link, "sqlstate", None)
        if isinstance(state, str) and state.startswith(UNAVAILABLE_STATES):
            return True
    return False


def is_disconnect(error: BaseException) -> bool:
    """A broken connection that is gone, not one that only timed out: after a disconnect the
    connections opened before it are suspect too, and a read may safely run again."""
    links = list(causes(error))
    if any(isinstance(link, TimeoutError) for link in links):
        return False
    return any(
        isinstance(link, BROKEN_CONNECTION)
        or str(getattr(link, "sqlstate", None) or "").startswith(SESSION_ENDED_STATES)
        for link in links
    )


def is_timeout(error: BaseException) -> bool:
    """No answer in time: the server may be silent (a statement timeout is not this)."""
    return any(isinstance(link, TimeoutError) for link in causes(error))
