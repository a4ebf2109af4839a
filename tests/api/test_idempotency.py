from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from sqlalchemy import text

from app.core.config import Settings
from app.core.errors import ServiceUnavailable
from app.models import Product
from app.schemas.product import ProductCreate
from app.services.products import ProductService
from tests.conftest import Users, _client, bearer
from tests.factories import product_data

pytestmark = pytest.mark.usefixtures("users")

REPLAYED = "idempotent-replayed"


def key(name: str) -> dict[str, str]:
    return {"Idempotency-Key": name}


async def scalar(app: Any, sql: str, **params: object) -> Any:
    async with app.state.engine.connect() as connection:
        return (await connection.execute(text(sql), params)).scalar_one()


async def product_count(app: Any) -> int:
    return int(await scalar(app, "SELECT count(*) FROM products"))


def assert_replay_of(replay: httpx.Response, first: httpx.Response) -> None:
    assert replay.headers[REPLAYED] == "true"
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    for header in ("content-type", "location", "etag"):
        assert replay.headers.get(header) == first.headers.get(header)


class TestCreateProduct:
    async def test_retry_replays_the_first_response_and_creates_once(
        self, editor: httpx.AsyncClient, app: Any
    ) -> None:
        body = product_data()
        first = await editor.post("/products", json=body, headers=key("create-1"))
        assert first.status_code == 201, first.text
        assert REPLAYED not in first.headers
        replay = await editor.post("/products", json=body, headers=key("create-1"))
        assert_replay_of(replay, first)
        assert replay.headers["location"] == f"/products/{first.json()['id']}"
        assert replay.headers["etag"] == '"1"'
        assert replay.headers["x-request-id"] != first.headers["x-request-id"]
        assert await product_count(app) == 1

    async def test_replay_is_the_first_response_even_after_the_product_changed(
        self, editor: httpx.AsyncClient
    ) -> None:
        body = product_data()
        first = await editor.post("/products", json=body, headers=key("create-2"))
        url = first.headers["location"]
        assert (await editor.patch(url, json={"name": "renamed"})).status_code == 200
        replay = await editor.post("/products", json=body, headers=key("create-2"))
        assert_replay_of(replay, first)
        assert replay.json()["name"] == body["name"]

    async def test_same_key_with_a_different_body_is_422(
        self, editor: httpx.AsyncClient, app: Any
    ) -> None:
        first = await editor.post("/products", json=product_data(), headers=key("k"))
        assert first.status_code == 201
        other = await editor.post("/products", json=product_data(), headers=key("k"))
        assert other.status_code == 422
        assert other.json()["type"] == "/problems/idempotency-key-reused"
        assert other.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
        assert REPLAYED not in other.headers
        assert await product_count(app) == 1

    async def test_same_key_on_another_endpoint_is_422(self, editor: httpx.AsyncClient) -> None:
        first = await editor.post("/products", json=product_data(), headers=key("k"))
        product_id = first.json()["id"]
        response = await editor.post(
            f"/products/{product_id}/stock", json={"delta": 1}, headers=key("k")
        )
        assert response.status_code == 422
        assert (await editor.get(f"/products/{product_id}")).json()["stock"] == 10

    async def test_concurrent_duplicates_create_exactly_once(
        self, editor: httpx.AsyncClient, app: Any
    ) -> None:
        body = product_data()
        responses = await asyncio.gather(
            *(editor.post("/products", json=body, headers=key("race")) for _ in range(5))
        )
        applied = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
        assert len(applied) == 1
        for response in responses:
            if response is applied[0]:
                continue
            if response.status_code == 409:
                assert response.json()["type"] == "/problems/idempotency-key-in-use"
                assert response.headers["retry-after"] == "1"
            else:
                assert_replay_of(response, applied[0])
        assert await product_count(app) == 1
        # Once the first has committed, a retry is a replay, never a 409.
        assert_replay_of(await editor.post("/products", json=body, headers=key("race")), applied[0])

    async def test_a_4xx_is_stored_and_replayed(self, editor: httpx.AsyncClient, app: Any) -> None:
        taken = await editor.post("/products", json=product_data(sku="TAKEN-1"))
        body = product_data(sku="taken-1")
        first = await editor.post("/products", json=body, headers=key("dup"))
        assert first.status_code == 409
        assert first.json()["type"] == "/problems/sku-taken"
        # The SKU is free now, yet the retry answers what the first attempt did.
        assert (await editor.delete(taken.headers["location"])).status_code == 204
        replay = await editor.post("/products", json=body, headers=key("dup"))
        assert_replay_of(replay, first)
        assert replay.json()["request_id"] == first.headers["x-request-id"]
        assert await scalar(app, "SELECT count(*) FROM products WHERE deleted_at IS NULL") == 0
        fresh = await editor.post("/products", json=body, headers=key("dup-2"))
        assert fresh.status_code == 201

    async def test_a_request_validation_error_does_not_use_up_the_key(
        self, editor: httpx.AsyncClient
    ) -> None:
        invalid = await editor.post("/products", json=product_data(price="-1"), headers=key("v"))
        assert invalid.status_code == 422
        valid = await editor.post("/products", json=product_data(), headers=key("v"))
        assert valid.status_code == 201
        assert REPLAYED not in valid.headers

    async def test_a_5xx_is_not_stored(
        self, editor: httpx.AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def unavailable(self: ProductService, data: ProductCreate) -> Product:
            raise ServiceUnavailable("down for a moment")

        body = product_data()
        with monkeypatch.context() as patch:
            patch.setattr(ProductService, "create", unavailable)
            failed = await editor.post("/products", json=body, headers=key("flaky"))
        assert failed.status_code == 503
        retry = await editor.post("/products", json=body, headers=key("flaky"))
        assert retry.status_code == 201
        assert REPLAYED not in retry.headers
        assert await product_count(app) == 1

    async def test_keys_belong_to_their_user(
        self, editor: httpx.AsyncClient, admin: httpx.AsyncClient, app: Any
    ) -> None:
        by_editor = await editor.post("/products", json=product_data(), headers=key("shared"))
        by_admin = await admin.post("/products", json=product_data(), headers=key("shared"))
        assert (by_editor.status_code, by_admin.status_code) == (201, 201)
        assert REPLAYED not in by_admin.headers
        assert by_editor.json()["id"] != by_admin.json()["id"]
        assert await product_count(app) == 2

    @pytest.mark.parametrize("value", ["", "x" * 256, "has space", "naïve"])
    async def test_malformed_key_is_422(self, editor: httpx.AsyncClient, value: str) -> None:
        response = await editor.post(
            "/products",
            json=product_data(),
            headers={"Idempotency-Key": value.encode()},
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"


class TestAdjustStock:
    async def test_retry_replays_and_moves_stock_once(
        self, editor: httpx.AsyncClient, app: Any
    ) -> None:
        product = (await editor.post("/products", json=product_data(stock=10))).json()
        url = f"/products/{product['id']}/stock"
        first = await editor.post(url, json={"delta": -3}, headers=key("take-3"))
        assert first.status_code == 200
        assert first.json()["stock"] == 7
        replay = await editor.post(url, json={"delta": -3}, headers=key("take-3"))
        assert_replay_of(replay, first)
        assert (await editor.get(f"/products/{product['id']}")).json()["stock"] == 7
        assert await scalar(app, "SELECT count(*) FROM stock_adjustments") == 1

    async def test_insufficient_stock_is_replayed_even_after_a_refill(
        self, editor: httpx.AsyncClient
    ) -> None:
        product = (await editor.post("/products", json=product_data(stock=1))).json()
        url = f"/products/{product['id']}/stock"
        first = await editor.post(url, json={"delta": -5}, headers=key("take-5"))
        assert first.status_code == 409
        assert first.json()["type"] == "/problems/insufficient-stock"
        assert (await editor.post(url, json={"delta": 100})).status_code == 200
        replay = await editor.post(url, json={"delta": -5}, headers=key("take-5"))
        assert_replay_of(replay, first)
        assert (await editor.get(f"/products/{product['id']}")).json()["stock"] == 101

    async def test_concurrent_duplicates_adjust_exactly_once(
        self, editor: httpx.AsyncClient, app: Any
    ) -> None:
        product = (await editor.post("/products", json=product_data(stock=10))).json()
        url = f"/products/{product['id']}/stock"
        responses = await asyncio.gather(
            *(editor.post(url, json={"delta": -1}, headers=key("once")) for _ in range(5))
        )
        applied = [r for r in responses if r.status_code == 200 and REPLAYED not in r.headers]
        assert len(applied) == 1
        assert all(
            r is applied[0] or r.status_code == 409 or r.content == applied[0].content
            for r in responses
        )
        assert (await editor.get(f"/products/{product['id']}")).json()["stock"] == 9
        assert await scalar(app, "SELECT count(*) FROM stock_adjustments") == 1


class TestExpiry:
    async def test_an_expired_key_is_purged_and_can_be_used_again(
        self, app: Any, settings: Settings, users: Users
    ) -> None:
        start = datetime.now(UTC)
        body = product_data()
        ttl = timedelta(seconds=settings.idempotency_ttl_seconds)

        async def post(at: datetime, data: dict[str, object]) -> httpx.Response:
            with time_machine.travel(at, tick=False):
                async with _client(app, bearer(settings, users.editor, "editor")) as editor:
                    return await editor.post("/products", json=data, headers=key("daily"))

        first = await post(start, body)
        assert first.status_code == 201
        # Still alive a minute before the end of its life: replayed.
        assert_replay_of(await post(start + ttl - timedelta(minutes=1), body), first)
        # Expired: the key is free, even for another body, and a new product is made.
        reused = await post(start + ttl + timedelta(minutes=1), product_data())
        assert reused.status_code == 201
        assert REPLAYED not in reused.headers
        assert reused.json()["id"] != first.json()["id"]
        assert await product_count(app) == 2
