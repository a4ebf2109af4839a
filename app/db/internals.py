"""Every SQLAlchemy (and asyncio) internal the service relies on, read here and nowhere else.

None of these is public API: a minor release may move or rename them. tests/unit/test_internals.py
exercises each one on a real engine and pool, and pyproject.toml pins SQLAlchemy to the minor
version that test has passed on. An upgrade that breaks one fails there, by name, instead of as
a gauge stuck at 0 or a pool that hands out dead connections after a restart.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.pool import Pool, PoolProxiedConnection, QueuePool
from sqlalchemy.util import await_ as _await
from sqlalchemy.util import greenlet_spawn as _greenlet_spawn

# Run a coroutine from a pool event hook (sync code running inside SQLAlchemy's greenlet), and
# run sync SQLAlchemy code from async code. Undocumented, but what its own asyncio layer uses.
await_ = _await
greenlet_spawn = _greenlet_spawn

# The PEP 249 `Error` of SQLAlchemy's asyncpg adapter: what a checkout raises when its connect
# fails with a server error (57P03 while the server starts or stops, 53300 when it is full). It
# subclasses neither SQLAlchemy's errors nor asyncpg's.
ASYNCPG_ADAPTER_ERROR: type[Exception] = AsyncAdapt_asyncpg_dbapi.Error


def invalidate_since(pool: Pool, pooled: PoolProxiedConnection, error: BaseException) -> None:
    """Invalidate `pooled` and every connection the pool opened before it (replaced at their next
    checkout): what SQLAlchemy's own Connection does on a disconnect, through `Pool._invalidate`.
    Sync: call it through `greenlet_spawn` from async code."""
    pool._invalidate(pooled, error)


def pool_waiters(pool: QueuePool) -> int:
    """Tasks blocked waiting for a connection of SQLAlchemy's async queue pool.

    The pool's queue (`QueuePool._pool`, an `AsyncAdaptedQueue`) wraps an asyncio.Queue created
    on first use (`_queue`, a memoized property: reading it would create one), whose `_getters`
    are the futures of the waiting tasks.
    """
    adapted: Any = getattr(pool, "_pool", None)
    queue = getattr(adapted, "__dict__", {}).get("_queue")
    if not isinstance(queue, asyncio.Queue):  # none made yet: nobody ever waited
        return 0
    getters: Any = queue._getters  # type: ignore[attr-defined]
    return sum(1 for waiter in getters if not waiter.done())
