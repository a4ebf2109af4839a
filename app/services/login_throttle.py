"""Failed-login counters, kept by the `limits` package: in Redis when REDIS_URL is set, so every
worker shares them, and in this process's memory otherwise.

Three fixed windows of LOGIN_FAILURE_WINDOW_SECONDS, opened by their first attempt:
- per client address: LOGIN_MAX_FAILURES_PER_CLIENT, against one address guessing many accounts;
- per account and client address: LOGIN_MAX_FAILURES, against one address guessing one password;
- per account from every address: LOGIN_MAX_FAILURES_PER_ACCOUNT, a ceiling against a spread
  attack. It is kept well above the pair limit so that strangers, who fill their own pairs
  first, cannot lock the owner out from her own address until they pass the ceiling.

An attempt is counted before its password is checked, by `limits`' `hit()` (an atomic
increment-and-test: INCRBY+EXPIRE in one Lua call, a lock in memory), so attempts that arrive
together cannot all slip under a limit: at most LOGIN_MAX_FAILURES of them get their password
checked. The counts that end up standing are failures only: an attempt refused by a limit, one
refused because the service was busy, and a successful login give their hits back, and a
successful login also clears its own pair (the owner's earlier typos), never the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as redis
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from app.core.config import Settings
from app.core.errors import LoginThrottled
from app.core.logging import get_logger
from app.core.metrics import LOGIN_FAILURES

KEY_PREFIX = "catalog-login"
# redis-py's pool refuses (MaxConnectionsError) past 100 connections in use rather than waiting,
# and the app shares it: a burst of logins queues here for one of a few connections instead.
STORE_CONNECTIONS = 32
STORE_WAIT_SECONDS = 1.0
log = get_logger("app.auth")
T = TypeVar("T")


def account_key(email: str) -> str:
    # Hashed so the counter store never holds email addresses.
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class _Hit:
    limiter: FixedWindowRateLimiter
    item: RateLimitItem
    identifiers: tuple[str, ...]


@dataclass(slots=True)
class Attempt:
    """The hits one login attempt holds while its password is checked."""

    hits: list[_Hit] = field(default_factory=list)
    pair: tuple[str, ...] = ()


class LoginThrottle:
    def __init__(
        self,
        storage: Storage,
        *,
        per_account: int,
        per_client: int,
        window_seconds: int,
        per_account_total: int | None = None,
    ) -> None:
        self.storage = storage
        self._limiter = FixedWindowRateLimiter(storage)
        self._store_slots = asyncio.Semaphore(STORE_CONNECTIONS)
        # Used only while the shared store is unreachable: throttling per process beats none.
        self._fallback = FixedWindowRateLimiter(MemoryStorage())
        # Checked in this order, and an attempt stops at the first limit it is over: one that
        # a client's own limit refuses takes nothing from the account's.
        self._items = (
            ("client", RateLimitItemPerSecond(per_client, window_seconds)),
            ("account_client", RateLimitItemPerSecond(per_account, window_seconds)),
            (
                "account",
                RateLimitItemPerSecond(per_account_total or per_account * 20, window_seconds),
            ),
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, client: redis.Redis | None = None, *, key_prefix: str = KEY_PREFIX
    ) -> LoginThrottle:
        storage: Storage
        if settings.redis_url:
            # Share the app's redis-py pool (closed by the lifespan); limits hands
            # `connection_pool` to redis-py although its annotation names only scalars.
            options = {"connection_pool": client.connection_pool} if client is not None else {}
            storage = RedisStorage(
                f"async+{settings.redis_url}",
                implementation="redispy",
                key_prefix=key_prefix,
                wrap_exceptions=True,
                **options,  # type: ignore[arg-type]
            )
        else:
            storage = MemoryStorage()
        return cls(
            storage,
            per_account=settings.login_max_failures,
            per_account_total=settings.login_max_failures_per_account,
            per_client=settings.login_max_failures_per_client,
            window_seconds=settings.login_failure_window_seconds,
        )

    def _identifiers(self, email: str, client: str) -> dict[str, tuple[str, ...]]:
        # The kind leads each key, so an address never shares a counter with an account.
        account = account_key(email)
        return {
            "client": ("client", client),
            "account_client": ("account_client", account, client),
            "account": ("account", account),
        }

    async def begin(self, *, email: str, client: str) -> Attempt:
        """Count one attempt on every limit; LoginThrottled (429, Retry-After) when one is over."""
        identifiers = self._identifiers(email, client)
        attempt = Attempt(pair=identifiers["account_client"])
        for kind, item in self._items:
            hit, allowed = await self._hit(item, identifiers[kind])
            attempt.hits.append(hit)
            if not allowed:
                retry_after = await self._retry_after(hit)
                await self.give_back(attempt)
                LOGIN_FAILURES.labels(reason=f"throttled_{kind}").inc()
                raise LoginThrottled(
                    "Too many failed logins; try again later", retry_after=retry_after
                )
        return attempt

    async def give_back(self, attempt: Attempt) -> None:
        """Take the attempt's hits back: it was not a failure (refused, or the service busy)."""
        for hit in attempt.hits:
            try:
                # A negative hit: the same atomic INCRBY; never a new key without its expiry.
                await self._call(hit.limiter, hit.limiter.hit(hit.item, *hit.identifiers, cost=-1))
            except StorageError:
                self._warn_unavailable()
        attempt.hits.clear()

    async def succeeded(self, attempt: Attempt) -> None:
        """A successful login is no failure, and forgives its own pair's earlier ones."""
        await self.give_back(attempt)
        _, pair_item = self._items[1]
        try:
            await self._call(self._limiter, self._limiter.clear(pair_item, *attempt.pair))
        except StorageError:
            self._warn_unavailable()
        await self._fallback.clear(pair_item, *attempt.pair)

    async def reset(self) -> None:
        """Forget every counter (tests and operators)."""
        await self.storage.reset()
        await self._fallback.storage.reset()

    async def _call(self, limiter: FixedWindowRateLimiter, call: Coroutine[Any, Any, T]) -> T:
        """Await `call`, on one of at most STORE_CONNECTIONS connections when it goes to the
        shared store; StorageError when none frees within STORE_WAIT_SECONDS."""
        if limiter is self._fallback:
            return await call
        try:
            async with asyncio.timeout(STORE_WAIT_SECONDS):
                await self._store_slots.acquire()
        except TimeoutError as error:
            call.close()
            raise StorageError(error) from None
        try:
            return await call
        finally:
            self._store_slots.release()

    async def _hit(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> tuple[_Hit, bool]:
        try:
            allowed = await self._call(self._limiter, self._limiter.hit(item, *identifiers))
            return _Hit(self._limiter, item, identifiers), allowed
        except StorageError:
            self._warn_unavailable()
            return _Hit(self._fallback, item, identifiers), await self._fallback.hit(
                item, *identifiers
            )

    async def _retry_after(self, hit: _Hit) -> int:
        try:
            stats = await self._call(
                hit.limiter, hit.limiter.get_window_stats(hit.item, *hit.identifiers)
            )
            return max(1, math.ceil(stats.reset_time - time.time()))
        except StorageError:
            return hit.item.get_expiry()

    @staticmethod
    def _warn_unavailable() -> None:
        log.warning("login throttle store unavailable; counting in this process only")
