"""A database that refuses or stops answering: 503 with Retry-After, quickly, never a hang."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

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
        assert (await outage_client.get("/products")).status_code == 200


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
