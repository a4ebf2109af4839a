from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from app.models import IdempotencyKey
from app.services.idempotency import (
    IdempotencyService,
    StoredResponse,
    fingerprint,
    purge_expired_keys,
    purge_periodically,
)
from tests.conftest import Users

TTL = 86_400
PRINT = fingerprint("POST", "/products", b'{"sku": "A"}')
RESPONSE = StoredResponse(
    status=201,
    body='{"id":1,"sku":"A","name":"\\u00e9 \u2603"}',
    headers={"content-type": "application/json", "location": "/products/1", "etag": '"1"'},
)


@pytest.fixture
def sessionmaker(app: Any, users: Users) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return maker


async def key_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(IdempotencyKey)) or 0)


async def store(
    sessionmaker: async_sessionmaker[AsyncSession],
    user_id: int,
    key: str,
    *,
    now: datetime | None = None,
) -> None:
    async with sessionmaker.begin() as session:
        service = IdempotencyService(session, ttl_seconds=TTL)
        assert await service.claim(user_id=user_id, key=key, fingerprint=PRINT, now=now) is None
        await service.record(user_id=user_id, key=key, response=RESPONSE)


class TestFingerprint:
    def test_depends_on_method_path_and_exact_body(self) -> None:
        base = fingerprint("POST", "/products/1/stock", b'{"delta": 1}')
        assert base == fingerprint("post", "/products/1/stock", b'{"delta": 1}')
        assert base != fingerprint("POST", "/products/2/stock", b'{"delta": 1}')
        assert base != fingerprint("POST", "/products/1/stock", b'{"delta": 2}')
        assert base != fingerprint("PATCH", "/products/1/stock", b'{"delta": 1}')


class TestClaim:
    async def test_stored_response_comes_back_byte_for_byte(
        self, sessionmaker: async_sessionmaker[AsyncSession], users: Users
    ) -> None:
        await store(sessionmaker, users.editor, "k")
        async with sessionmaker.begin() as session:
            service = IdempotencyService(session, ttl_seconds=TTL)
            replay = await service.claim(user_id=users.editor, key="k", fingerprint=PRINT)
        assert replay == RESPONSE

    async def test_another_fingerprint_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession], users: Users
    ) -> None:
        await store(sessionmaker, users.editor, "k")
        async with sessionmaker.begin() as session:
            service = IdempotencyService(session, ttl_seconds=TTL)
            with pytest.raises(IdempotencyKeyReused):
                await service.claim(user_id=users.editor, key="k", fingerprint="0" * 64)

    async def test_a_held_key_is_409_at_once_then_replayed_after_commit(
        self, sessionmaker: async_sessionmaker[AsyncSession], users: Users
    ) -> None:
        async with sessionmaker() as first, sessionmaker() as second:
            holder = IdempotencyService(first, ttl_seconds=TTL)
            assert await holder.claim(user_id=users.editor, key="k", fingerprint=PRINT) is None
            other = IdempotencyService(second, ttl_seconds=TTL)
            # Would block on the uncommitted key row if it waited; must answer at once.
            with pytest.raises(IdempotencyKeyInUse):
                await asyncio.wait_for(
                    other.claim(user_id=users.editor, key="k", fingerprint=PRINT), timeout=5
                )
            await second.rollback()
            await holder.record(user_id=users.editor, key="k", response=RESPONSE)
            await first.commit()
            assert await other.claim(user_id=users.editor, key="k", fingerprint=PRINT) == RESPONSE
            await second.commit()

    async def test_a_rolled_back_claim_leaves_the_key_free(
        self, sessionmaker: async_sessionmaker[AsyncSession], users: Users
    ) -> None:
        async with sessionmaker() as session:
            service = IdempotencyService(session, ttl_seconds=TTL)
            assert await service.claim(user_id=users.editor, key="k", fingerprint=PRINT) is None
            await session.rollback()
        assert await key_count(sessionmaker) == 0
        await store(sessionmaker, users.editor, "k")
        assert await key_count(sessionmaker) == 1

    async def test_the_same_key_of_two_users_is_two_keys(
        self, sessionmaker: async_sessionmaker[AsyncSession], users: Users
    ) -> None:
        await store(sessionmaker, users.editor, "k")
        await store(sessionmaker, users.admin, "k")
        assert await key_count(sessionmaker) == 2

    async def test_an_expired_key_is_taken_over(
        self, sessionmaker: async_sessionmaker[AsyncSession], users: Users
    ) -> None:
        now = datetime.now(UTC)
        await store(sessionmaker, users.editor, "k", now=now - timedelta(seconds=TTL + 1))
        async with sessionmaker.begin() as session:
            service = IdempotencyService(session, ttl_seconds=TTL)
            other = fingerprint("POST", "/products", b"{}")
            assert await service.claim(user_id=users.editor, key="k", fingerprint=other) is None
        async with sessionmaker() as session:
            row = await session.get_one(IdempotencyKey, (users.editor, "k"))
        assert row.fingerprint == other
        assert row.response_status is None
        assert row.expires_at > now + timedelta(seconds=TTL - 60)


class TestPurge:
    async def test_purges_only_expired_keys_in_batches(
        self, sessionmaker: async_sessionmaker[AsyncSession], users: Users
    ) -> None:
        now = datetime.now(UTC)
        for number in range(5):
            await store(sessionmaker, users.editor, f"old-{number}", now=now - timedelta(days=2))
        await store(sessionmaker, users.editor, "live", now=now)
        purged = await purge_expired_keys(sessionmaker, batch_size=2)
        assert purged == 5
        async with sessionmaker() as session:
            left = list(await session.scalars(select(IdempotencyKey.key)))
        assert left == ["live"]

    async def test_the_lifespan_loop_purges(
        self, sessionmaker: async_sessionmaker[AsyncSession], users: Users
    ) -> None:
        await store(sessionmaker, users.editor, "old", now=datetime.now(UTC) - timedelta(days=2))
        task = asyncio.create_task(purge_periodically(sessionmaker, interval_seconds=0))

        async def purged() -> None:
            while await key_count(sessionmaker):
                await asyncio.sleep(0)

        try:
            await asyncio.wait_for(purged(), timeout=10)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await key_count(sessionmaker) == 0
