"""Failed-login counters per account and per client address, kept by the `limits` package.

The counters live in Redis when REDIS_URL is set, so every worker shares them, and in this
process's memory otherwise. Only failures count; the throttle is checked before a password is
verified, so a throttled attacker gets no answer about the password at all.
"""

from __future__ import annotations

import hashlib
import math
import time

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
log = get_logger("app.auth")


def account_key(email: str) -> str:
    # Hashed so the counter store never holds email addresses.
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class LoginThrottle:
    """Fixed windows of `window_seconds` that open with the first failure."""

    def __init__(
        self, storage: Storage, *, per_account: int, per_client: int, window_seconds: int
    ) -> None:
        self.storage = storage
        self._limiter = FixedWindowRateLimiter(storage)
        # Used only while the shared store is unreachable: throttling per process beats none.
        self._fallback = FixedWindowRateLimiter(MemoryStorage())
        self._account = RateLimitItemPerSecond(per_account, window_seconds)
        self._client = RateLimitItemPerSecond(per_client, window_seconds)

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
            per_client=settings.login_max_failures_per_client,
            window_seconds=settings.login_failure_window_seconds,
        )

    def _limits(self, email: str, client: str) -> list[tuple[RateLimitItem, str, str]]:
        return [
            (self._account, "account", account_key(email)),
            (self._client, "client", client),
        ]

    async def check(self, *, email: str, client: str) -> None:
        """Raise 429 with Retry-After when the account or the client is over its limit."""
        for item, kind, key in self._limits(email, client):
            try:
                allowed = await self._limiter.test(item, kind, key)
                limiter = self._limiter
            except StorageError:
                self._warn_unavailable()
                allowed = await self._fallback.test(item, kind, key)
                limiter = self._fallback
            if not allowed:
                try:
                    stats = await limiter.get_window_stats(item, kind, key)
                    retry_after = math.ceil(stats.reset_time - time.time())
                except StorageError:
                    retry_after = item.get_expiry()
                LOGIN_FAILURES.labels(reason=f"throttled_{kind}").inc()
                raise LoginThrottled(
                    "Too many failed logins; try again later", retry_after=retry_after
                )

    async def record_failure(self, *, email: str, client: str) -> None:
        for item, kind, key in self._limits(email, client):
            try:
                await self._limiter.hit(item, kind, key)
            except StorageError:
                self._warn_unavailable()
                await self._fallback.hit(item, kind, key)

    async def record_success(self, *, email: str) -> None:
        """A successful login clears the account's failures (never the client's)."""
        try:
            await self._limiter.clear(self._account, "account", account_key(email))
        except StorageError:
            self._warn_unavailable()
        await self._fallback.clear(self._account, "account", account_key(email))

    async def reset(self) -> None:
        """Forget every counter (tests and operators)."""
        await self.storage.reset()
        await self._fallback.storage.reset()

    @staticmethod
    def _warn_unavailable() -> None:
        log.warning("login throttle store unavailable; counting in this process only")
