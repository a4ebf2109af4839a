"""The library internals behind app/db/internals.py, app/api/instrumentator_internals.py and
app/api/fastapi_internals.py, on real objects: these fail, by name, when an upgrade moves or
changes one (pyproject.toml pins the versions they passed on)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Response
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator.metrics import Info
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from starlette.datastructures import Headers, QueryParams

from app.api.fastapi_internals import effective_route, parse_params, return_annotation
from app.api.instrumentator_internals import HandlerAfterRouting
from app.db.engine import build_engine
from app.db.faults import sqlstate
from app.db.internals import (
    ASYNCPG_ADAPTER_ERROR,
    await_,
    greenlet_spawn,
    invalidate_since,
    pool_waiters,
)
from tests.conftest import make_settings

WAIT = 5.0


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The service's engine with one connection and no overflow: a second checkout waits."""
    built = build_engine(make_settings(database_url, None, db_pool_size=1, db_max_overflow=0))
    yield built
    await built.dispose()


async def checkout(engine: AsyncEngine) -> PoolProxiedConnection:
    return await greenlet_spawn(engine.sync_engine.raw_connection)


async def backend_pid(pooled: PoolProxiedConnection) -> int:
    driver: asyncpg.Connection = pooled.driver_connection  # type: ignore[assignment]
    pid: int = await driver.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_pool_waiters_counts_a_task_waiting_for_a_connection(engine: AsyncEngine) -> None:
    pool = engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    assert pool_waiters(pool) == 0
    # Reading the gauge must not create the pool's asyncio queue (a memoized property).
    assert "_queue" not in pool._pool.__dict__

    held = await checkout(engine)
    waiter = asyncio.create_task(checkout(engine))
    deadline = time.monotonic() + WAIT
    while pool_waiters(pool) == 0:
        assert time.monotonic() < deadline, "pool_waiters never saw the waiting checkout"
        await asyncio.sleep(0.01)
    assert pool_waiters(pool) == 1

    await greenlet_spawn(held.close)
    served = await asyncio.wait_for(waiter, WAIT)
    assert pool_waiters(pool) == 0
    await greenlet_spawn(served.close)


async def test_invalidate_since_drops_the_connections_opened_before(
    database_url: str,
) -> None:
    engine = build_engine(make_settings(database_url, None, db_pool_size=2, db_max_overflow=0))
    try:
        older, failing = await checkout(engine), await checkout(engine)
        older_pid = await backend_pid(older)
        await greenlet_spawn(older.close)  # back in the pool, looks fine

        await greenlet_spawn(
            invalidate_since, engine.sync_engine.pool, failing, ConnectionResetError()
        )
        assert not failing.is_valid
        assert engine.sync_engine.pool.checkedout() == 0  # its slot is back

        first, second = await checkout(engine), await checkout(engine)
        pids = {await backend_pid(first), await backend_pid(second)}
        assert older_pid not in pids  # the pooled one was replaced at checkout
        await greenlet_spawn(first.close)
        await greenlet_spawn(second.close)
        # Connections opened after the invalidation are kept.
        again = await checkout(engine)
        assert await backend_pid(again) in pids
        await greenlet_spawn(again.close)
    finally:
        await engine.dispose()


async def test_await_runs_a_coroutine_from_a_pool_event_hook(engine: AsyncEngine) -> None:
    seen: list[int] = []

    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        seen.append(await_(dbapi_connection.driver_connection.fetchval("SELECT 41 + 1")))

    event.listen(engine.sync_engine, "checkout", on_checkout)
    pooled = await checkout(engine)
    await greenlet_spawn(pooled.close)
    assert seen == [42]


async def test_a_refused_connect_raises_the_adapters_error(database_url: str) -> None:
    url = make_url(database_url).set(database=f"missing_{uuid.uuid4().hex[:8]}")
    engine = build_engine(make_settings(database_url, None), url=url.render_as_string(False))
    try:
        with pytest.raises(ASYNCPG_ADAPTER_ERROR) as raised:
            await checkout(engine)
        assert type(raised.value).__module__ == "sqlalchemy.dialects.postgresql.asyncpg"
        assert sqlstate(raised.value) == "3D000"  # invalid_catalog_name
    finally:
        await engine.dispose()


async def test_the_instrumentator_asks_handler_after_routing_for_the_handler() -> None:
    assert "_get_handler" in vars(PrometheusInstrumentatorMiddleware)
    recorded: list[str] = []

    def record(info: Info) -> None:
        recorded.append(info.modified_handler)

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> int:
        return item_id

    @app.get("/skipped")
    async def skipped() -> str:
        return "no metrics"

    app.add_middleware(
        HandlerAfterRouting,
        excluded_handlers=["^/skipped$"],
        instrumentations=[record],
        registry=CollectorRegistry(),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/items/7")).status_code == 200
        assert (await client.get("/skipped")).status_code == 200
    # The raw path, not the template the instrumentator's own lookup finds: the override is
    # what it called; and the path it returned is what exclusion was matched against.
    assert recorded == ["/items/7"]


async def _checked_dependency() -> None:
    return None


async def _fastapi_endpoint(
    n: Annotated[int, Query(ge=1)], x_tag: Annotated[str, Header()]
) -> Response:
    return Response()


def test_fastapi_parses_params_as_its_solver_does() -> None:
    route = APIRoute("/x", _fastapi_endpoint)
    values, errors = parse_params(route.dependant.query_params, QueryParams("n=3"))
    assert (values, errors) == ({"n": 3}, [])
    values, errors = parse_params(route.dependant.query_params, QueryParams("n=0"))
    assert [error["loc"] for error in errors] == [("query", "n")]
    headers = Headers({"x-tag": "blue"})
    assert parse_params(route.dependant.header_params, headers) == ({"x_tag": "blue"}, [])
    assert return_annotation(_fastapi_endpoint) is Response


def test_fastapi_builds_an_included_routes_handler_from_its_effective_context() -> None:
    seen: list[Any] = []

    class Recording(APIRoute):
        def get_route_handler(self) -> Any:
            seen.append(effective_route(self))
            return super().get_route_handler()

    router = APIRouter(route_class=Recording)
    router.get("/x")(_fastapi_endpoint)
    app = FastAPI()
    app.include_router(router, prefix="/outer", dependencies=[Depends(_checked_dependency)])
    (route,) = router.routes
    list(iter_route_contexts(app.routes))  # FastAPI builds the included routes when first used
    # First the route's own handler (no context: the route itself), then the included one.
    assert seen[0] is route
    included = seen[-1]
    assert included is not route
    assert included.path == "/outer/x"
    assert included.dependency_overrides_provider is app
    assert included.dependant.dependencies[0].call is _checked_dependency
