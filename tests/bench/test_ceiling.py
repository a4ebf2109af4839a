"""The benchmark compares like with like: the ceiling app answers what the service answers.

And its report computes medians, ratios and the issue's targets right on given numbers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.db import bootstrap
from app.services.seed import seed_catalog
from bench import framework_floor_app, report, wrk
from bench.ceiling_app import Ceiling
from bench.report import CEILING, NAIVE, SERVICE, Sample
from tests.conftest import Users


@pytest.fixture
async def ceiling(
    database_url: str, settings: Settings, users: Users
) -> AsyncIterator[httpx.AsyncClient]:
    await seed_catalog(database_url, 45, random_seed=7)
    app = Ceiling(
        bootstrap.asyncpg_dsn(database_url),
        settings.secret_key.get_secret_value(),
        users.editor,
        pool_size=2,
    )
    await app.startup()
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://ceiling") as client:
        yield client
    await app.shutdown()


async def _same(viewer: httpx.AsyncClient, ceiling: httpx.AsyncClient, path: str) -> Any:
    service, bare = await viewer.get(path), await ceiling.get(path)
    assert service.status_code == bare.status_code == 200, (service.text, bare.text)
    # Parsing normalises key order and whitespace, nothing else: every value must match.
    assert bare.json() == service.json()
    return service.json()


async def test_by_id_and_pages_match_the_service(
    viewer: httpx.AsyncClient, ceiling: httpx.AsyncClient
) -> None:
    one = await _same(viewer, ceiling, "/products/17")
    assert one["id"] == 17
    assert one["attributes"]
    first = await _same(viewer, ceiling, "/products")
    assert len(first["items"]) == 20
    assert first["next_cursor"]
    # The service's cursor pages the ceiling too: the deep-page run sends both the same one.
    second = await _same(viewer, ceiling, f"/products?cursor={first['next_cursor']}")
    assert {p["id"] for p in second["items"]}.isdisjoint(p["id"] for p in first["items"])


async def test_fastapi_alone_answers_as_the_ceiling_does(
    viewer: httpx.AsyncClient,
    ceiling: httpx.AsyncClient,  # seeds the catalog
    database_url: str,
    settings: Settings,
    users: Users,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BENCH_DSN", bootstrap.asyncpg_dsn(database_url))
    monkeypatch.setenv("SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("BENCH_USER_ID", str(users.editor))
    floor = framework_floor_app.create()
    transport = httpx.ASGITransport(app=floor)
    async with (
        floor.router.lifespan_context(floor),
        httpx.AsyncClient(transport=transport, base_url="http://floor") as client,
    ):
        one = await _same(viewer, client, "/products/17")
        assert one["id"] == 17
        assert (await client.get("/products/17")).headers["etag"] == f'"{one["version"]}"'
        first = await _same(viewer, client, "/products")
        assert len(first["items"]) == 20
        missing = await client.get("/products/999999")
        assert missing.status_code == 404


async def test_ceiling_writes_honour_if_match(ceiling: httpx.AsyncClient) -> None:
    patched = await ceiling.patch(
        "/products/3", json={"name": "Renamed", "price": "9.50"}, headers={"If-Match": '"1"'}
    )
    assert patched.status_code == 200
    assert patched.json()["version"] == 2
    assert patched.json()["price"] == "9.50"
    assert patched.headers["etag"] == '"2"'
    stale = await ceiling.patch("/products/3", json={"name": "X"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    stock = await ceiling.post("/products/3/stock", json={"delta": 2})
    assert stock.json()["stock"] == patched.json()["stock"] + 2


def test_report_medians_and_ratios() -> None:
    def samples(*rps: float, p99: float = 10.0) -> list[Sample]:
        return [Sample(rps=r, p50_ms=r / 100, p99_ms=p99 + r / 1000, cpu_us=1e6 / r) for r in rps]

    results = {
        "GET by id": {
            SERVICE: samples(1000, 3000, 2000, p99=30),
            CEILING: samples(5000, 4000, 6000),
            NAIVE: samples(500, 400, 450),
        },
        "first page": {SERVICE: samples(1200, 1100, 1300), CEILING: samples(2000, 2400, 2200)},
        "deep": {SERVICE: samples(1000, 1000, 1000), CEILING: samples(2000, 2000, 2000)},
    }
    table = report.summaries(results)
    by_id = table["GET by id"][SERVICE]
    assert by_id.rps == 2000  # the median, not the mean of 1000, 3000, 2000
    assert by_id.ratio == pytest.approx(2000 / 5000)
    assert by_id.p99_ratio == pytest.approx(32 / 15)
    assert by_id.cpu_us == pytest.approx(500)
    assert table["GET by id"][CEILING].ratio == 1.0
    assert table["GET by id"][NAIVE].ratio == pytest.approx(450 / 5000)
    checks = report.targets(table, "GET by id", "first page", "deep")
    assert [c.met for c in checks] == [True, True, False, True]
    assert checks[0].figure == "0.40"
    assert checks[1].figure == "0.55"
    assert "GET by id" in checks[2].figure
    assert checks[3].figure == "0.83 of page 1"
    markdown = report.table_markdown(table)
    assert "| GET by id | service | 2,000 | 0.40 |" in markdown
    assert "NOT met" in report.targets_markdown(checks)


def test_wrk_output_is_parsed() -> None:
    output = """Running 5s test @ http://127.0.0.1:1/products
  2 threads and 64 connections
  Latency Distribution
     50%   12.50ms
     75%   20.00ms
     90%   30.00ms
     99%    1.20s
  10240 requests in 5.00s, 9.10MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   2048.00
"""
    result = wrk.parse(output)
    assert (result.requests, result.seconds, result.rps) == (10240, 5.0, 2048.0)
    assert (result.p50_ms, result.p99_ms, result.failed) == (12.5, 1200.0, 7)
