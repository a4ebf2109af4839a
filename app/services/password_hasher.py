"""Password hashing on a few threads of its own, and logins refused at once past them. Per process.

Argon2 is slow on purpose: a verification keeps a core busy for tenths of a second. Run on the
default thread pool, a burst of logins would take every thread that `asyncio.to_thread` and
Starlette's sync endpoints share, and queue for as long as the burst lasts. Here at most
LOGIN_MAX_CONCURRENT_HASHES logins hash at once, on threads nothing else uses; a login that
finds no free slot within HASH_WAIT_SECONDS is answered 503 instead of waiting its turn, so a
burst is answered at the burst's expense. argon2-cffi releases the GIL while it hashes, and on
Linux the hashing threads run at a lower CPU priority (nice +HASH_NICENESS): with every core
hashing, the event loop, and so every other request, still gets the CPU first.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from app.core.config import Settings
from app.core.errors import ServiceUnavailable

# Well under a second, and about the time a slot takes to free when hashes already run.
HASH_WAIT_SECONDS = 0.25
HASH_NICENESS = 10
T = TypeVar("T")


def _lower_priority() -> None:
    # Linux schedules threads one by one, so this leaves the process's other threads alone;
    # elsewhere the call would name a process, so hashing keeps the normal priority there.
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)


class LoginBusy(ServiceUnavailable):
    title = "Too many logins at once"
    default_headers = (("Retry-After", "1"),)


class PasswordHasher:
    def __init__(self, max_concurrent: int, *, wait_seconds: float = HASH_WAIT_SECONDS) -> None:
        self.max_concurrent = max_concurrent
        self.wait_seconds = wait_seconds
        self._slots = asyncio.Semaphore(max_concurrent)
        self._threads = ThreadPoolExecutor(
            max_concurrent, thread_name_prefix="password-hash", initializer=_lower_priority
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordHasher:
        return cls(settings.login_max_concurrent_hashes)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One login's turn to hash, or LoginBusy when none frees within `wait_seconds`.

        A login holds its slot from its user lookup to its last hash, so logins past the bound
        take no database connection either.
        """
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise LoginBusy("Too many logins at once; try again in a moment") from None
        try:
            yield
        finally:
            self._slots.release()

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` on a hashing thread; call it holding a `slot()`.

        The pool has one thread per slot, so holders never queue behind each other; a request
        cancelled mid-hash frees its slot while its thread finishes, and the next holder's
        work waits for that thread, which keeps the CPU bound.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, function, *args)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
