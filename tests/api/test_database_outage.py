"""A database that refuses or stops answering: 503 with Retry-After, quickly, never a hang."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.main import create_app
from tests.conftest import Users, backend_pids, bearer, make_settings, settings_through
from tests.factories import product_data
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture(params=[0.0], ids=["ping-always"])
async def outage_client(
    proxy: TcpProxy, settings: Settings, users: Users, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    app_settings = settings_through(
        proxy,
        settings,
        db_pool_size=2,
        db_max_overflow=0,
        db_pool_timeout=2,
        db_connect_timeout=1,
        db_ping_timeout=1,
        db_ping_idle_seconds=request.param,
        db_watch_interval_seconds=0.5,
    )
    app = create_app(app_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = bearer(settings, users.editor, "editor")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            yield client


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.get(path)
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert "request_id" in response.json()


async def seconds_until_ok(client: httpx.AsyncClient, path: str, within: float = 4.0) -> float:
    """How long until `path` answers 200 again; fails after `within` seconds."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < within:
        if (await client.get(path)).status_code == 200:
            return elapsed
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} still not 200 after {within}s")


class TestDatabaseOutage:
    @pytest.mark.parametrize(
        "outage_client", [0.0, 60.0], ids=["ping-always", "ping-when-idle"], indirect=True
    )
    async def test_refused_connections_give_503_at_once(
        self, outage_client: httpx.AsyncClient, proxy: TcpProxy
    ) -> None:
        assert (await outage_client.get("/products")).status_code == 200
        await proxy.refuse()
        for path in ("/products", "/products/1", "/categories"):
            response, elapsed = await timed_get(outage_client, path)
            assert_unavailable(response)
            assert elapsed < 2.0
        write = await outage_client.post(
            "/products", json={"sku": "X-1", "name": "x", "price": "1", "currency": "EUR"}
        )
        assert_unavailable(write)
        assert (await outage_client.get("/health")).status_code == 200
        ready = await outage_client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["status"] == "error"
        await proxy.restore()
        assert (await outage_client.get("/products")).status_code == 200

    @pytest.mark.parametrize(
        "outage_client", [0.0, 60.0], ids=["ping-always", "ping-when-idle"], indirect=True
    )
    async def test_silent_database_gives_503_within_the_pool_timeout(
        self, outage_client: httpx.AsyncClient, proxy: TcpProxy
    ) -> None:
        """Pinged at checkout: ping timeout 1 s + connect timeout 1 s. Lent without a ping (it
        was just used): the database watch, every 0.5 s with the same 1 s ping, aborts it."""
        assert (await outage_client.get("/products")).status_code == 200
        await proxy.blackhole()
        response, elapsed = await timed_get(outage_client, "/products")
        assert_unavailable(response)
        assert elapsed < 4.0  # with room for CI
        ready, elapsed = await timed_get(outage_client, "/health/ready")
        assert ready.status_code == 503
        assert elapsed < 3.0
        await proxy.restore()
        # The watch holds the pool shut until a round gets an answer: one that began before
        # the restore waits out its connect timeout first (1 s here), the next is 0.5 s later.
        assert await seconds_until_ok(outage_client, "/products") < 3.0


@pytest.mark.parametrize("idle", [0.0, 60.0], ids=["ping-always", "ping-when-idle"])
async def test_backends_ended_by_the_server_never_give_500(
    app: FastAPI, settings: Settings, users: Users, editor: httpx.AsyncClient, idle: float
) -> None:
    """A restart or pg_terminate_backend leaves pooled connections that look alive until used:
    reads run again on a fresh one; a write gets 503 at worst (nothing written), never 500."""
    created = await editor.post("/products", json=product_data())
    assert created.status_code == 201
    product = f"/products/{created.json()['id']}"
    service = create_app(
        make_settings(
            str(settings.database_url),
            None,
            db_pool_size=4,
            db_max_overflow=0,
            db_ping_idle_seconds=idle,
        )
    )
    async with service.router.lifespan_context(service):
        transport = httpx.ASGITransport(app=service)
        headers = bearer(settings, users.editor, "editor")
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://test", headers=headers
            ) as client,
            app.state.engine.connect() as admin,
        ):
            reads: list[int] = []
            writes: list[int] = []
            for stock in range(3):
                pids = await backend_pids(service.state.engine, 4)
                killed = (
                    await admin.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) "
                            "FROM unnest(CAST(:pids AS int[])) AS pid"
                        ),
                        {"pids": pids},
                    )
                ).scalar_one()
                assert killed == 4
                answers = await asyncio.gather(
                    *(client.get(product) for _ in range(3)),
                    client.get("/products"),
                    client.patch(product, json={"stock": stock}),
                )
                reads += [r.status_code for r in answers[:-1]]
                writes.append(answers[-1].status_code)
        assert set(reads) == {200}, reads
        assert set(writes) <= {200, 503}, writes
        if idle == 0.0:
            assert set(writes) == {200}  # the checkout ping found each ended backend


def default_timing_settings(proxy: TcpProxy, settings: Settings, idle: float) -> Settings:
    """The service's own timeouts (DB_POOL_TIMEOUT, DB_CONNECT_TIMEOUT, DB_PING_TIMEOUT,
    DB_WATCH_INTERVAL_SECONDS at their defaults), a pool of 2 and no overflow."""
    timing = (
        "db_pool_timeout",
        "db_connect_timeout",
        "db_ping_timeout",
        "db_watch_interval_seconds",
    )
    defaults = {name: Settings.model_fields[name].default for name in timing}
    app_settings = settings_through(
        proxy, settings, db_pool_size=2, db_max_overflow=0, db_ping_idle_seconds=idle, **defaults
    )
    return app_settings


# More requests at once than the pool has connections: every kind of route, with each waiting
# for a slot behind the others.
CONCURRENT = 12
SILENT_BUDGET_SECONDS = 2.0


@pytest.mark.parametrize("idle", [0.0, 60.0], ids=["ping-always", "ping-when-idle"])
async def test_a_silent_database_gives_every_request_503_within_2_seconds(
    proxy: TcpProxy, settings: Settings, users: Users, editor: httpx.AsyncClient, idle: float
) -> None:
    created = await editor.post("/products", json=product_data())
    assert created.status_code == 201
    product = f"/products/{created.json()['id']}"
    app_settings = default_timing_settings(proxy, settings, idle)
    assert app_settings.db_pool_timeout <= SILENT_BUDGET_SECONDS
    service = create_app(app_settings)
    async with service.router.lifespan_context(service):
        headers = bearer(settings, users.editor, "editor")
        transport = httpx.ASGITransport(app=service)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers, timeout=10
        ) as client:
            assert (await client.get(product)).status_code == 200  # connections just used
            assert (await client.get("/products/export")).status_code == 200  # the bulk pool's
            await proxy.blackhole()

            async def timed(method: str, path: str, body: object = None) -> tuple[int, float]:
                started = time.monotonic()
                response = await client.request(method, path, json=body)
                elapsed = time.monotonic() - started
                if response.status_code != 503:
                    return response.status_code, elapsed
                assert_unavailable(response)
                return 503, elapsed

            requests = [
                ("GET", product, None),
                ("GET", "/products", None),
                ("GET", "/categories", None),
                ("POST", f"{product}/stock", {"delta": 1, "reason": "restock"}),
                ("PATCH", product, {"name": "renamed"}),
                ("GET", "/health/ready", None),
                ("GET", "/products/export", None),
            ]
            answers = await asyncio.gather(
                *(timed(*requests[i % len(requests)]) for i in range(CONCURRENT))
            )
            slowest = max(elapsed for _, elapsed in answers)
            print(f"silent database, {idle=}: {CONCURRENT} requests, slowest 503 {slowest:.3f}s")
            assert {status for status, _ in answers} == {503}, answers
            assert slowest < SILENT_BUDGET_SECONDS, answers
            await proxy.restore()
            # Back within DB_CONNECT_TIMEOUT + DB_WATCH_INTERVAL_SECONDS (2 s), with room for CI.
            resumed = await seconds_until_ok(client, product)
            print(f"  back {resumed:.3f}s after the restore")
            assert resumed < 3.0


async def test_a_busy_healthy_pool_gives_503_after_the_pool_timeout(
    proxy: TcpProxy, settings: Settings, users: Users
) -> None:
    """A request queued for a slot that never frees is not kept waiting past DB_POOL_TIMEOUT."""
    app_settings = settings_through(
        proxy, settings, db_pool_size=1, db_max_overflow=0, db_pool_timeout=1.0
    )
    service = create_app(app_settings)
    async with service.router.lifespan_context(service):
        headers = bearer(settings, users.editor, "editor")
        transport = httpx.ASGITransport(app=service)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as c,
            service.state.engine.connect() as held,  # the pool's only connection
        ):
            await held.execute(text("SELECT 1"))
            for path in ("/products", "/categories"):
                response, elapsed = await timed_get(c, path)
                assert_unavailable(response)
                assert 0.9 < elapsed < 2.0


async def test_a_server_error_at_connect_gives_503_on_every_path(
    settings: Settings, users: Users
) -> None:
    """A connect the server rejects (53300 here, as 57P03 while it starts or stops) reaches the
    app as SQLAlchemy's adapter error, neither a SQLAlchemy nor an asyncpg class: once a 500 on
    the hot reads, whose handler lookup found nothing for it."""
    role = f"catalog_full_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(str(settings.database_url))
    async with admin.begin() as connection:
        await connection.execute(
            text(f"CREATE ROLE {role} LOGIN PASSWORD 'refused' CONNECTION LIMIT 0")
        )
    try:
        url = make_url(str(settings.database_url)).set(username=role, password="refused")
        refused = make_settings(url.render_as_string(hide_password=False), None)
        for fast_path in (True, False):
            service = create_app(refused, fast_path=fast_path)
            async with service.router.lifespan_context(service):
                transport = httpx.ASGITransport(app=service)
                headers = bearer(settings, users.editor, "editor")
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://test", headers=headers
                ) as client:
                    answers = [
                        await client.get("/products"),
                        await client.get("/products/1"),
                        await client.get("/categories"),
                        await client.post("/products/1/stock", json={"delta": 1}),
                        await client.patch("/products/1", json={"name": "x"}),
                        await client.get("/products/export", headers={"Accept": "text/csv"}),
                        await client.post(
                            "/auth/token", data={"username": "a@example.com", "password": "pw"}
                        ),
                    ]
                    for response in answers:
                        assert_unavailable(response)
                    ready = await client.get("/health/ready")
                    assert ready.status_code == 503
                    assert ready.headers["retry-after"]
                    assert ready.json()["checks"]["database"]["status"] == "error"
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f"DROP ROLE IF EXISTS {role}"))
        await admin.dispose()
