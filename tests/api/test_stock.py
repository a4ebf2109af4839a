from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.main import create_app
from tests.conftest import Users, _client, bearer, make_settings
from tests.factories import product_data

pytestmark = pytest.mark.usefixtures("users")


async def create(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    response = await client.post("/products", json=product_data(**overrides))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def scalar(app: Any, sql: str, **params: object) -> Any:
    async with app.state.engine.connect() as connection:
        return (await connection.execute(text(sql), params)).scalar_one()


class TestAdjustStock:
    async def test_answers_the_product_as_get_does_with_etag(
        self, editor: httpx.AsyncClient
    ) -> None:
        product = await create(editor, stock=10)
        url = f"/products/{product['id']}"
        response = await editor.post(f"{url}/stock", json={"delta": -3, "reason": "sold"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["stock"] == 7
        assert body["version"] == 2
        assert response.headers["etag"] == '"2"'
        assert body["updated_at"] > product["updated_at"]
        fetched = await editor.get(url)
        assert fetched.content == response.content
        assert fetched.headers["etag"] == '"2"'

    async def test_increment(self, admin: httpx.AsyncClient) -> None:
        product = await create(admin, stock=0)
        response = await admin.post(f"/products/{product['id']}/stock", json={"delta": 5})
        assert response.status_code == 200
        assert response.json()["stock"] == 5

    async def test_below_zero_is_409_and_changes_nothing(
        self, editor: httpx.AsyncClient, app: Any
    ) -> None:
        product = await create(editor, stock=2)
        url = f"/products/{product['id']}"
        response = await editor.post(f"{url}/stock", json={"delta": -3})
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/insufficient-stock"
        after = (await editor.get(url)).json()
        assert (after["stock"], after["version"]) == (2, 1)
        assert await scalar(app, "SELECT count(*) FROM stock_adjustments") == 0

    async def test_fifty_concurrent_decrements_on_stock_thirty(
        self, editor: httpx.AsyncClient, app: Any
    ) -> None:
        product = await create(editor, stock=30)
        url = f"/products/{product['id']}/stock"
        responses = await asyncio.gather(
            *(editor.post(url, json={"delta": -1, "reason": "order"}) for _ in range(50))
        )
        codes = [r.status_code for r in responses]
        assert codes.count(200) == 30
        assert codes.count(409) == 20
        final = (await editor.get(f"/products/{product['id']}")).json()
        assert final["stock"] == 0
        assert final["version"] == 31
        ledger = await scalar(
            app,
            "SELECT count(*) FROM stock_adjustments WHERE product_id = :id AND delta = -1",
            id=product["id"],
        )
        assert ledger == 30
        # Every success saw its own stock: the 30 answers carry 29..0 exactly once.
        assert sorted(r.json()["stock"] for r in responses if r.status_code == 200) == list(
            range(30)
        )

    async def test_stale_if_match_is_412(self, editor: httpx.AsyncClient) -> None:
        product = await create(editor, stock=5)
        url = f"/products/{product['id']}/stock"
        fresh = await editor.post(url, json={"delta": 1}, headers={"If-Match": '"1"'})
        assert fresh.status_code == 200
        stale = await editor.post(url, json={"delta": 1}, headers={"If-Match": '"1"'})
        assert stale.status_code == 412
        assert (await editor.get(f"/products/{product['id']}")).json()["stock"] == 6

    async def test_stale_if_match_wins_over_insufficient_stock(
        self, editor: httpx.AsyncClient
    ) -> None:
        product = await create(editor, stock=0)
        url = f"/products/{product['id']}/stock"
        assert (await editor.post(url, json={"delta": 1})).status_code == 200
        response = await editor.post(url, json={"delta": -5}, headers={"If-Match": '"1"'})
        assert response.status_code == 412

    async def test_concurrent_adjustments_with_same_if_match_one_wins(
        self, editor: httpx.AsyncClient
    ) -> None:
        product = await create(editor, stock=5)
        url = f"/products/{product['id']}/stock"
        responses = await asyncio.gather(
            *(editor.post(url, json={"delta": 1}, headers={"If-Match": '"1"'}) for _ in range(6))
        )
        assert sorted(r.status_code for r in responses) == [200] + [412] * 5
        assert (await editor.get(f"/products/{product['id']}")).json()["stock"] == 6

    async def test_missing_and_deleted_products_are_404(self, editor: httpx.AsyncClient) -> None:
        assert (await editor.post("/products/424242/stock", json={"delta": 1})).status_code == 404
        product = await create(editor)
        assert (await editor.delete(f"/products/{product['id']}")).status_code == 204
        response = await editor.post(f"/products/{product['id']}/stock", json={"delta": 1})
        assert response.status_code == 404

    async def test_overflowing_the_stock_is_422_not_500(self, editor: httpx.AsyncClient) -> None:
        product = await create(editor, stock=2**31 - 1)
        response = await editor.post(f"/products/{product['id']}/stock", json={"delta": 1})
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "delta"]

    @pytest.mark.parametrize(
        "body",
        [
            {"delta": 0},
            {"delta": True},
            {"delta": 1.5},
            {"delta": "1"},
            {"delta": 2**31},
            {},
            {"delta": 1, "reason": "x" * 501},
            {"delta": 1, "reason": "nul\x00"},
            {"delta": 1, "extra": 1},
        ],
    )
    async def test_invalid_body_is_422(
        self, editor: httpx.AsyncClient, body: dict[str, object]
    ) -> None:
        product = await create(editor)
        response = await editor.post(f"/products/{product['id']}/stock", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"

    async def test_wrong_content_type_is_415(self, editor: httpx.AsyncClient) -> None:
        product = await create(editor)
        response = await editor.post(
            f"/products/{product['id']}/stock",
            content=b'{"delta": 1}',
            headers={"content-type": "text/plain"},
        )
        assert response.status_code == 415

    async def test_viewer_cannot_adjust(
        self, viewer: httpx.AsyncClient, editor: httpx.AsyncClient
    ) -> None:
        product = await create(editor)
        response = await viewer.post(f"/products/{product['id']}/stock", json={"delta": 1})
        assert response.status_code == 403


class TestRequireIfMatch:
    @pytest.fixture
    async def strict(self, database_url: str, redis_url: str, users: Users) -> Any:
        settings: Settings = make_settings(database_url, redis_url, require_if_match=True)
        application = create_app(settings)
        async with (
            application.router.lifespan_context(application),
            _client(application, bearer(settings, users.editor, "editor")) as client,
        ):
            yield client

    async def test_without_if_match_is_428_and_with_it_applies(
        self, strict: httpx.AsyncClient
    ) -> None:
        product = await create(strict, stock=3)
        url = f"/products/{product['id']}/stock"
        missing = await strict.post(url, json={"delta": -1})
        assert missing.status_code == 428
        applied = await strict.post(url, json={"delta": -1}, headers={"If-Match": '"1"'})
        assert applied.status_code == 200
        assert applied.json()["stock"] == 2

    async def test_a_428_does_not_use_up_the_idempotency_key(
        self, strict: httpx.AsyncClient
    ) -> None:
        product = await create(strict, stock=3)
        url = f"/products/{product['id']}/stock"
        headers = {"Idempotency-Key": "fix-and-retry"}
        assert (await strict.post(url, json={"delta": -1}, headers=headers)).status_code == 428
        retry = await strict.post(url, json={"delta": -1}, headers={**headers, "If-Match": '"1"'})
        assert retry.status_code == 200
        assert "idempotent-replayed" not in retry.headers
        assert retry.json()["stock"] == 2

    async def test_missing_product_is_still_404(self, strict: httpx.AsyncClient) -> None:
        assert (await strict.post("/products/424242/stock", json={"delta": 1})).status_code == 404


class TestStockHistory:
    async def test_lists_who_how_much_why_newest_first_in_pages(
        self, editor: httpx.AsyncClient, admin: httpx.AsyncClient, users: Users
    ) -> None:
        product = await create(editor, stock=0)
        url = f"/products/{product['id']}/stock"
        for delta in (5, -2, 7):
            assert (await editor.post(url, json={"delta": delta, "reason": f"r{delta}"})).is_success
        assert (await admin.post(url, json={"delta": -1})).is_success
        first = await editor.get(f"{url}/history", params={"limit": 3})
        assert first.status_code == 200
        page = first.json()
        assert [(e["delta"], e["stock_after"]) for e in page["items"]] == [
            (-1, 9),
            (7, 10),
            (-2, 3),
        ]
        assert page["items"][0]["user_id"] == users.admin
        assert page["items"][0]["reason"] is None
        assert page["items"][1]["user_id"] == users.editor
        assert page["items"][1]["reason"] == "r7"
        assert page["items"][0]["created_at"].endswith("Z")
        assert page["next_cursor"]
        second = (
            await editor.get(f"{url}/history", params={"limit": 3, "cursor": page["next_cursor"]})
        ).json()
        assert [e["delta"] for e in second["items"]] == [5]
        assert second["next_cursor"] is None

    async def test_viewer_may_read_history(
        self, viewer: httpx.AsyncClient, editor: httpx.AsyncClient
    ) -> None:
        product = await create(editor)
        response = await viewer.get(f"/products/{product['id']}/stock/history")
        assert response.status_code == 200
        assert response.json() == {"items": [], "next_cursor": None}

    async def test_missing_product_is_404(self, viewer: httpx.AsyncClient) -> None:
        assert (await viewer.get("/products/424242/stock/history")).status_code == 404

    @pytest.mark.parametrize(
        "params", [{"cursor": "garbage"}, {"limit": 0}, {"limit": 101}, {"sort": "id"}]
    )
    async def test_bad_parameters_are_422(
        self, editor: httpx.AsyncClient, params: dict[str, object]
    ) -> None:
        product = await create(editor)
        response = await editor.get(f"/products/{product['id']}/stock/history", params=params)
        assert response.status_code == 422

    async def test_a_product_list_cursor_is_refused(self, editor: httpx.AsyncClient) -> None:
        for _ in range(2):
            await create(editor)
        listing = (await editor.get("/products", params={"limit": 1})).json()
        product_id = listing["items"][0]["id"]
        response = await editor.get(
            f"/products/{product_id}/stock/history", params={"cursor": listing["next_cursor"]}
        )
        assert response.status_code == 422

    async def test_anonymous_is_401(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/products/1/stock/history")).status_code == 401
