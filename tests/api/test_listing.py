from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.factories import product_data

pytestmark = pytest.mark.usefixtures("users")


async def seed(editor: httpx.AsyncClient, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    created = []
    for row in rows:
        response = await editor.post("/products", json=product_data(**row))
        assert response.status_code == 201, response.text
        created.append(response.json())
    return created


async def all_pages(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/products", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def expected_order(products: list[dict[str, Any]], sort: str) -> list[int]:
    field = sort.lstrip("-")

    def key(p: dict[str, Any]) -> tuple[Any, int]:
        value = Decimal(p[field]) if field == "price" else p[field]
        return value, p["id"]

    return [p["id"] for p in sorted(products, key=key, reverse=sort.startswith("-"))]


PRICES = ["5.00", "5.00", "5.00", "12.50", "0.99", "100.00", "12.50"]
NAMES = ["beta", "alpha", "gamma", "alpha", "delta", "beta", "epsilon"]


class TestSortAndPage:
    @pytest.mark.parametrize(
        "sort", ["id", "-id", "created_at", "-created_at", "price", "-price", "name", "-name"]
    )
    async def test_every_sort_pages_in_order_with_id_tiebreak(
        self, editor: httpx.AsyncClient, sort: str
    ) -> None:
        products = await seed(
            editor, [{"price": p, "name": n} for p, n in zip(PRICES, NAMES, strict=True)]
        )
        listed = await all_pages(editor, sort=sort, limit=2)
        assert [p["id"] for p in listed] == expected_order(products, sort)

    async def test_default_is_newest_first(self, editor: httpx.AsyncClient) -> None:
        products = await seed(editor, [{}, {}, {}])
        listed = (await editor.get("/products")).json()["items"]
        assert [p["id"] for p in listed] == [p["id"] for p in reversed(products)]

    async def test_rows_inserted_meanwhile_never_repeat_or_skip_older_rows(
        self, editor: httpx.AsyncClient
    ) -> None:
        older = await seed(editor, [{} for _ in range(6)])
        first = (await editor.get("/products", params={"limit": 3})).json()
        await seed(editor, [{} for _ in range(4)])  # newer rows sort before the cursor
        rest = await all_pages(editor, limit=3, cursor=first["next_cursor"])
        seen = [p["id"] for p in first["items"] + rest]
        assert seen == [p["id"] for p in reversed(older)]

    async def test_limit_bounds(self, viewer: httpx.AsyncClient) -> None:
        assert (await viewer.get("/products", params={"limit": 0})).status_code == 422
        assert (await viewer.get("/products", params={"limit": 101})).status_code == 422
        assert (await viewer.get("/products", params={"limit": 100})).status_code == 200


class TestFilters:
    async def test_price_range_is_inclusive(self, editor: httpx.AsyncClient) -> None:
        products = await seed(editor, [{"price": p} for p in PRICES])
        listed = await all_pages(editor, min_price="5", max_price="12.50", sort="id")
        expected = [p["id"] for p in products if Decimal("5") <= Decimal(p["price"]) <= 12.5]
        assert [p["id"] for p in listed] == expected

    async def test_in_stock_status_and_tags(self, editor: httpx.AsyncClient) -> None:
        a, b, c = await seed(
            editor,
            [
                {"stock": 0, "status": "active", "tags": ["red", "sale"]},
                {"stock": 3, "status": "draft", "tags": ["red"]},
                {"stock": 9, "status": "active", "tags": ["Sale", "RED", "new"]},
            ],
        )

        async def ids(**params: Any) -> list[int]:
            return [p["id"] for p in await all_pages(editor, sort="id", **params)]

        assert await ids(in_stock="true") == [b["id"], c["id"]]
        assert await ids(in_stock="false") == [a["id"]]
        assert await ids(status="active") == [a["id"], c["id"]]
        assert await ids(tag=["red", "sale"]) == [a["id"], c["id"]]
        assert await ids(tag=["new"]) == [c["id"]]

    async def test_full_text_search_ranks_name_above_description(
        self, editor: httpx.AsyncClient
    ) -> None:
        in_description, in_name, _ = await seed(
            editor,
            [
                {"name": "Garden hose", "description": "Pairs with any wireless speaker."},
                {"name": "Wireless speaker", "description": "Loud."},
                {"name": "Desk lamp", "description": "Warm light."},
            ],
        )
        listed = await all_pages(editor, q="wireless speakers", limit=1)
        assert [p["id"] for p in listed] == [in_name["id"], in_description["id"]]

    async def test_search_finds_sku_and_sorts_when_asked(self, editor: httpx.AsyncClient) -> None:
        cheap, dear = await seed(
            editor,
            [
                {"sku": "ZX-100", "name": "Zeta widget", "price": "1.00"},
                {"sku": "ZX-200", "name": "Zeta widget pro", "price": "9.00"},
            ],
        )
        by_sku = await all_pages(editor, q="ZX-200")
        assert [p["id"] for p in by_sku] == [dear["id"]]
        by_price = await all_pages(editor, q="zeta", sort="-price")
        assert [p["id"] for p in by_price] == [dear["id"], cheap["id"]]


class TestBadParameters:
    @pytest.mark.parametrize(
        "params",
        [
            {"sort": "stock"},
            {"unknown": "1"},
            {"min_price": "abc"},
            {"min_price": "-1"},
            {"in_stock": "maybe"},
            {"status": "gone"},
            {"category_id": str(2**64)},
            {"cursor": "not-a-cursor"},
            {"cursor": "eyJhIjoxfQ.AAAA"},
            {"q": "\x00"},
        ],
    )
    async def test_is_422_problem(self, viewer: httpx.AsyncClient, params: dict[str, str]) -> None:
        response = await viewer.get("/products", params=params)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"

    async def test_cursor_of_another_sort_is_422(self, editor: httpx.AsyncClient) -> None:
        await seed(editor, [{}, {}])
        page = (await editor.get("/products", params={"limit": 1, "sort": "price"})).json()
        other = await editor.get(
            "/products", params={"cursor": page["next_cursor"], "sort": "name"}
        )
        assert other.status_code == 422

    async def test_tampered_cursor_is_422(self, editor: httpx.AsyncClient) -> None:
        await seed(editor, [{}, {}])
        cursor = (await editor.get("/products", params={"limit": 1})).json()["next_cursor"]
        payload, signature = cursor.split(".")
        forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
        assert (await editor.get("/products", params={"cursor": forged})).status_code == 422
