"""PUBLIC_READ: anyone may read products and categories; everything else still needs a token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from tests.conftest import Users, bearer, make_settings
from tests.factories import category_data, product_data


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "solved"])
async def public_app(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[FastAPI]:
    public = make_settings(str(settings.database_url), None, public_read=True)
    application = create_app(public, fast_path=request.param)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def anonymous(public_app: FastAPI, users: Users) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=public_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_anyone_reads_products_and_categories(
    anonymous: httpx.AsyncClient, editor: httpx.AsyncClient
) -> None:
    category = (await editor.post("/categories", json=category_data())).json()
    product = (await editor.post("/products", json=product_data(category_id=category["id"]))).json()
    listed = await anonymous.get("/products", params={"category_id": category["id"]})
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [product["id"]]
    one = await anonymous.get(f"/products/{product['id']}")
    assert (one.status_code, one.json()["sku"]) == (200, product["sku"])
    assert (await anonymous.get(f"/categories/{category['id']}")).status_code == 200
    assert (await anonymous.get("/categories")).status_code == 200


async def test_writes_export_and_users_still_need_a_token(
    anonymous: httpx.AsyncClient, editor: httpx.AsyncClient
) -> None:
    product = (await editor.post("/products", json=product_data())).json()
    refused = [
        await anonymous.post("/products", json=product_data()),
        await anonymous.patch(f"/products/{product['id']}", json={"stock": 1}),
        await anonymous.delete(f"/products/{product['id']}"),
        await anonymous.post(f"/products/{product['id']}/stock", json={"delta": 1}),
        await anonymous.get("/products/export"),
        await anonymous.get("/users/me"),
        await anonymous.post("/categories", json=category_data()),
    ]
    assert [r.status_code for r in refused] == [401] * len(refused)
    assert all(r.headers["www-authenticate"] == "Bearer" for r in refused)


async def test_a_bad_token_is_refused_not_ignored(
    anonymous: httpx.AsyncClient, settings: Settings, users: Users
) -> None:
    bad = await anonymous.get("/products", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
    good = await anonymous.get("/products", headers=bearer(settings, users.viewer, "viewer"))
    assert good.status_code == 200
