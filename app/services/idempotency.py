"""Idempotency keys: remember a write's response so that a retry replays it instead of redoing it.

The key row is written in the same transaction as the work it guards: if the work commits, so
does the stored response; if the transaction dies, the key is free again. Expiry is judged by
the application clock (passed in as `now`), so every comparison uses one clock.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from app.core.logging import get_logger
from app.models import IdempotencyKey

log = get_logger("app.idempotency")

# Try, never wait: a duplicate that arrives while the first request still runs gets a 409 at
# once (SPEC), instead of holding a pooled connection blocked on the first one's key row for
# as long as that request takes. The lock is per (user, key), released when the transaction
# ends, i.e. after the first request's key row and response are committed and visible.
TRY_LOCK_SQL = text(
    "SELECT pg_try_advisory_xact_lock("
    "hashtextextended('idempotency:' || CAST(:user_id AS bigint)::text || ':' || :key, 0))"
)
# Inserts a new key, or takes over an expired one in place; a live key is left alone (no row).
CLAIM_SQL = text(
    """
    INSERT INTO idempotency_keys (user_id, key, fingerprint, expires_at)
    VALUES (:user_id, :key, :fingerprint, :expires_at)
    ON CONFLICT (user_id, key) DO UPDATE
        SET fingerprint = EXCLUDED.fingerprint, expires_at = EXCLUDED.expires_at,
            created_at = now(), response_status = NULL, response_body = NULL,
            response_headers = NULL
        WHERE idempotency_keys.expires_at <= :now
    RETURNING true
    """
)
# Bounded, and SKIP LOCKED so that purgers (one per worker) never wait on each other.
PURGE_SQL = text(
    """
    DELETE FROM idempotency_keys WHERE ctid IN (
        SELECT ctid FROM idempotency_keys WHERE expires_at <= :now
        ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    """
)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response as it is replayed: status, exact body text, and headers (content-type,
    Location, ETag...)."""

    status: int
    body: str
    headers: dict[str, str]


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path (so, endpoint and product) and the
    exact body bytes a retry resends."""
    digest = hashlib.sha256(f"{method.upper()} {path}\n".encode())
    digest.update(body)
    return digest.hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


class IdempotencyService:
    def __init__(self, session: AsyncSession, *, ttl_seconds: int) -> None:
        self.session = session
        self.ttl = timedelta(seconds=ttl_seconds)

    async def claim(
        self, *, user_id: int, key: str, fingerprint: str, now: datetime | None = None
    ) -> StoredResponse | None:
        """Claim the key for this transaction (None: do the work), or return what to replay.

        Raises IdempotencyKeyInUse while another transaction holds the key, and
        IdempotencyKeyReused when the key was first used for a different request.
        """
        now = now or utcnow()
        params = {"user_id": user_id, "key": key}
        if not await self.session.scalar(TRY_LOCK_SQL, params):
            raise IdempotencyKeyInUse("A request with this Idempotency-Key is still in progress")
        claimed = await self.session.scalar(
            CLAIM_SQL,
            {**params, "fingerprint": fingerprint, "expires_at": now + self.ttl, "now": now},
        )
        if claimed:
            return None
        row = (
            await self.session.execute(
                select(
                    IdempotencyKey.fingerprint,
                    IdempotencyKey.response_status,
                    IdempotencyKey.response_body,
                    IdempotencyKey.response_headers,
                ).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
            )
        ).one()
        if row.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used for a different request",
                loc=["header", "Idempotency-Key"],
            )
        if row.response_status is None:
            # Unreachable while the lock holds (a key is committed only with its response);
            # kept so that a bug there shows as a retryable 409, never as a replay of nothing.
            raise IdempotencyKeyInUse("A request with this Idempotency-Key is still in progress")
        return StoredResponse(
            status=row.response_status, body=row.response_body, headers=row.response_headers or {}
        )

    async def record(self, *, user_id: int, key: str, response: StoredResponse) -> None:
        """Store the response on the claimed key, to be committed with the work."""
        # The body is kept as one JSON string, not as a JSON object: jsonb would reorder the
        # keys, and a replay must be byte for byte the first response.
        await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
            .values(
                response_status=response.status,
                response_body=response.body,
                response_headers=response.headers,
            )
            .execution_options(synchronize_session=False)
        )


async def purge_expired(
    session: AsyncSession, *, now: datetime | None = None, batch_size: int = 1000
) -> int:
    """Delete up to `batch_size` expired keys; returns how many went."""
    result = await session.execute(PURGE_SQL, {"now": now or utcnow(), "batch": batch_size})
    return int(getattr(result, "rowcount", 0))


async def purge_expired_keys(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    batch_size: int = 1000,
    now: datetime | None = None,
) -> int:
    """Purge every expired key, one short transaction per batch; returns the total."""
    total = 0
    while True:
        async with sessionmaker.begin() as session:
            purged = await purge_expired(session, now=now, batch_size=batch_size)
        total += purged
        if purged < batch_size:
            return total


async def purge_periodically(
    sessionmaker: async_sessionmaker[AsyncSession], *, interval_seconds: float
) -> None:
    """Run by the lifespan until cancelled. Expired keys are reusable even before they go
    (the claim takes them over); this only keeps the table from growing forever."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            purged = await purge_expired_keys(sessionmaker)
        except Exception:  # the database may be down for a while; try again next round
            log.warning("idempotency key purge failed", exc_info=True)
            continue
        if purged:
            log.info("purged expired idempotency keys", count=purged)
