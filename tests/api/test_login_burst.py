"""Bursts of logins: counted before they are checked, refused at their own expense.

Run with `-s` to see the figures (statuses and the slowest read) printed.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage

from app.core.config import Settings
from app.core.security import verify_password
from app.services import auth as auth_service
from app.services.login_throttle import LoginThrottle
from app.services.password_hasher import HASH_NICENESS, PasswordHasher
from tests.conftest import PASSWORD, Users, bearer
from tests.factories import product_data
from tests.ops.server import running_server

pytestmark = pytest.mark.usefixtures("users")

CONCURRENT = 60
BURST_ADDRESSES = 20
BURST_PER_ADDRESS = 10
BURST_PER_CLIENT_LIMIT = 5


def form(email: str, password: str) -> dict[str, str]:
    return {"username": email, "password": password}


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest,
    app: FastAPI,
    settings: Settings,
    isolated_throttle: LoginThrottle,
) -> LoginThrottle:
    """The suite's limits (5 per pair, 20 per address), counted in memory or in Redis."""
    if request.param == "memory":
        throttle = LoginThrottle.from_settings(settings.model_copy(update={"redis_url": None}))
        assert isinstance(throttle.storage, MemoryStorage)
        app.state.login_throttle = throttle  # isolated_throttle puts the original back
    else:
        throttle = isolated_throttle
        assert isinstance(throttle.storage, RedisStorage)
    return throttle


class TestConcurrentWrongPasswords:
    async def test_at_most_the_limit_are_checked_the_rest_are_429(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        store: LoginThrottle,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        checked: list[str | None] = []

        def verify(password: str, password_hash: str | None) -> tuple[bool, bool]:
            checked.append(password_hash)
            return verify_password(password, password_hash)

        monkeypatch.setattr(auth_service, "verify_password", verify)
        # A slot for every attempt: only the throttle may stop them here, never "busy".
        hasher = PasswordHasher(CONCURRENT)
        original, app.state.password_hasher = app.state.password_hasher, hasher
        try:
            responses = await asyncio.gather(
                *(
                    client.post("/auth/token", data=form("viewer@example.com", "wrong!"))
                    for _ in range(CONCURRENT)
                )
            )
            statuses = Counter(r.status_code for r in responses)
            print(f"\n{CONCURRENT} concurrent wrong passwords ({store.storage}): {statuses}")
            limit = settings.login_max_failures
            assert statuses == {401: limit, 429: CONCURRENT - limit}
            assert len(checked) == limit
            for response in responses:
                if response.status_code == 429:
                    assert 1 <= int(response.headers["retry-after"]) <= 300
                    assert response.headers["content-type"] == "application/problem+json"
            # The failures stand: the right password from this address is refused too.
            right = await client.post("/auth/token", data=form("viewer@example.com", PASSWORD))
            assert right.status_code == 429
            assert len(checked) == limit
        finally:
            app.state.password_hasher = original
            hasher.close()


class TestHashingThreads:
    async def test_logins_hash_on_their_own_threads_at_a_lower_priority(
        self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: list[tuple[str, int]] = []

        def verify(password: str, password_hash: str | None) -> tuple[bool, bool]:
            thread = threading.current_thread()
            seen.append((thread.name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
            return verify_password(password, password_hash)

        monkeypatch.setattr(auth_service, "verify_password", verify)
        response = await client.post("/auth/token", data=form("viewer@example.com", PASSWORD))
        assert response.status_code == 200
        ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        # Not the default thread pool (asyncio.to_thread, Starlette's sync code), and below
        # the event loop's priority: with every core hashing, other requests still run first.
        [(name, niceness)] = seen
        assert name.startswith("password-hash")
        assert niceness == min(19, ours + HASH_NICENESS)


class TestRedisConnections:
    async def test_a_burst_larger_than_the_redis_pool_is_still_counted_in_redis(
        self, app: FastAPI, isolated_throttle: LoginThrottle
    ) -> None:
        # redis-py refuses a connection past its pool's 100 instead of waiting; counting
        # would then fall back to this process's memory, unseen by the other workers.
        assert app.state.redis.connection_pool.max_connections == 100
        limit = 1000
        throttle = LoginThrottle(
            isolated_throttle.storage,
            per_account=limit,
            per_client=limit,
            per_account_total=limit,
            window_seconds=60,
        )
        await asyncio.gather(
            *(throttle.begin(email=f"user{n}@example.com", client="10.9.9.9") for n in range(250))
        )
        key = RateLimitItemPerSecond(limit, 60).key_for("client", "10.9.9.9")
        assert await isolated_throttle.storage.get(key) == 250


def address_block() -> str:
    """127.A.B.: a loopback block of this run's own. The server counts in the shared Redis
    under its default key prefix for LOGIN_FAILURE_WINDOW_SECONDS; an earlier run's failures
    from the same addresses would change what this one sees."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 254)}."


def from_address(base_url: str, address: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30)


class TestBurstAgainstARealServer:
    async def test_a_login_burst_answers_itself_and_reads_go_on(
        self,
        editor: httpx.AsyncClient,
        settings: Settings,
        users: Users,
        tmp_path: Path,
    ) -> None:
        created = await editor.post("/products", json=product_data())
        assert created.status_code == 201
        product = f"/products/{created.json()['id']}"
        block = address_block()
        env = {"LOGIN_MAX_FAILURES_PER_CLIENT": str(BURST_PER_CLIENT_LIMIT)}
        with running_server(settings, tmp_path, **env) as server:
            reader = httpx.AsyncClient(
                base_url=server.base_url,
                headers=bearer(settings, users.viewer, "viewer"),
                timeout=30,
            )
            try:
                assert (await reader.get(product)).status_code == 200  # warm
                done = asyncio.Event()

                async def read_until_done() -> list[tuple[int, float]]:
                    reads: list[tuple[int, float]] = []
                    while not done.is_set() or len(reads) < 10:
                        started = time.perf_counter()
                        response = await reader.get(product)
                        reads.append((response.status_code, time.perf_counter() - started))
                        await asyncio.sleep(0.01)
                    return reads

                async def log_in(caller: httpx.AsyncClient, number: int) -> int:
                    response = await caller.post(
                        "/auth/token",
                        data=form(f"nobody-{uuid.uuid4().hex}@example.com", "guess"),
                        # Not trusted from these addresses: each stays one client.
                        headers={"X-Forwarded-For": f"10.1.{number % 250}.{number // 250 + 1}"},
                    )
                    return response.status_code

                async def burst() -> Counter[int]:
                    clients = [
                        from_address(server.base_url, f"{block}{host}")
                        for host in range(2, 2 + BURST_ADDRESSES)
                    ]
                    try:
                        return Counter(
                            await asyncio.gather(
                                *(
                                    log_in(caller, index * BURST_PER_ADDRESS + n)
                                    for index, caller in enumerate(clients)
                                    for n in range(BURST_PER_ADDRESS)
                                )
                            )
                        )
                    finally:
                        for caller in clients:
                            await caller.aclose()

                reading = asyncio.create_task(read_until_done())
                await asyncio.sleep(0.05)
                started = time.perf_counter()
                # On a loop of its own: the reader's latencies are the server's, not those of
                # a client loop busy sending 200 requests.
                statuses = await asyncio.to_thread(asyncio.run, burst())
                burst_seconds = time.perf_counter() - started
                done.set()
                reads = await reading

                read_statuses = Counter(status for status, _ in reads)
                slowest = max(seconds for _, seconds in reads)
                print(
                    f"\nburst of {sum(statuses.values())} logins from {BURST_ADDRESSES} addresses"
                    f" in {burst_seconds:.2f} s: {dict(statuses)}; {len(reads)} reads"
                    f" {dict(read_statuses)}, slowest {slowest * 1000:.0f} ms"
                )
                assert set(statuses) <= {401, 429, 503}
                assert statuses[401] >= 1
                assert read_statuses == {200: len(reads)}
                assert slowest < 1.0

                # X-Forwarded-For from an untrusted peer changes nothing: five failures from
                # one address, each claiming another, and the sixth attempt is refused.
                async with from_address(server.base_url, f"{block}30") as spoofer:
                    for number in range(BURST_PER_CLIENT_LIMIT + 1):
                        response = await spoofer.post(
                            "/auth/token",
                            data=form(f"nobody-{uuid.uuid4().hex}@example.com", "guess"),
                            headers={"X-Forwarded-For": f"10.2.0.{number + 1}"},
                        )
                        expected = 401 if number < BURST_PER_CLIENT_LIMIT else 429
                        assert response.status_code == expected, response.text
            finally:
                await reader.aclose()
