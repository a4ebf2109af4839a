"""How many exports and imports may run at once: in all, and per user. Per process.

Bulk operations hold a database connection for as long as their client sends or reads, so they
run on a small pool of their own (BULK_POOL_SIZE connections, `app.main`) and take one of as
many slots first: a free slot means a free connection, and the main pool is never touched.
Past the bounds a request is refused before any work starts: 429 when its user already runs
BULK_MAX_PER_USER operations, 503 when no slot frees within BULK_QUEUE_SECONDS. The counts live
in this process: with several workers each has its own slots (and its own bulk pool).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from app.core.config import Settings
from app.core.errors import ServiceUnavailable, TooManyRequests

# A hint, not a promise: bulk operations usually end within seconds, and no lease can last past
# BULK_EXPORT_DEADLINE_SECONDS.
RETRY_AFTER_SECONDS = 5


class BulkUserLimit(TooManyRequests):
    title = "Too many bulk operations"


class BulkCapacityFull(ServiceUnavailable):
    title = "Bulk capacity in use"
    default_headers = (("Retry-After", str(RETRY_AFTER_SECONDS)),)


class BulkLease:
    """One slot, held by one user's operation; `release()` is safe to call more than once."""

    def __init__(self, capacity: BulkCapacity, user_id: int) -> None:
        self._capacity = capacity
        self.user_id = user_id
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._capacity._release(self.user_id)


class BulkCapacity:
    def __init__(self, *, slots: int, per_user: int, queue_seconds: float) -> None:
        self.slots = slots
        self.per_user = per_user
        self.queue_seconds = queue_seconds
        self._free = asyncio.Semaphore(slots)
        self._by_user: Counter[int] = Counter()  # operations held or waiting, per user
        self.in_use = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> BulkCapacity:
        return cls(
            slots=settings.bulk_pool_size,
            per_user=settings.bulk_max_per_user,
            queue_seconds=settings.bulk_queue_seconds,
        )

    async def acquire(self, user_id: int) -> BulkLease:
        """A slot for `user_id`, or BulkUserLimit (429) / BulkCapacityFull (503)."""
        if self._by_user[user_id] >= self.per_user:
            raise BulkUserLimit(
                f"You already run {self.per_user} exports or imports; wait for one to finish",
                retry_after=RETRY_AFTER_SECONDS,
            )
        # Counted while waiting too: a burst from one user cannot queue past its share.
        self._by_user[user_id] += 1
        try:
            async with asyncio.timeout(self.queue_seconds):
                await self._free.acquire()
        except TimeoutError:
            self._forget(user_id)
            raise BulkCapacityFull(
                "Every slot for exports and imports is in use; try again shortly"
            ) from None
        except BaseException:
            self._forget(user_id)
            raise
        self.in_use += 1
        return BulkLease(self, user_id)

    def _forget(self, user_id: int) -> None:
        self._by_user[user_id] -= 1
        if self._by_user[user_id] <= 0:
            del self._by_user[user_id]

    def _release(self, user_id: int) -> None:
        self.in_use -= 1
        self._forget(user_id)
        self._free.release()
