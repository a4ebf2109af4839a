"""Filtered lists return the same pages whichever way they are read.

A filtered list first walks the sort order for a budget of rows, walks again further when the
matches it saw say that is enough, and otherwise collects all the matches first, in a window
of the sort order first when two walks found nothing (see
app.services.listing.keyset.sorted_rows). Tiny budgets and windows here push every list
through all the ways; each must give the order computed here from the products as created.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.services.listing import keyset, ranked_search
from tests.api.test_listing import all_pages, expected_order, seed

pytestmark = pytest.mark.usefixtures("users")

COUNT = 60


@pytest.fixture
async def catalog(editor: httpx.AsyncClient) -> dict[str, Any]:
    rng = random.Random(7)
    root = (await editor.post("/categories", json={"slug": "root", "name": "Root"})).json()
    child = (
        await editor.post(
            "/categories", json={"slug": "child", "name": "Child", "parent_id": root["id"]}
        )
    ).json()
    empty = (await editor.post("/categories", json={"slug": "empty", "name": "Empty"})).json()
    rows = []
    for n in range(COUNT):
        # "rare" is in one product in fifteen, "common" in about half.
        words = ["rare" if n % 15 == 3 else "plain", "common" if rng.random() < 0.5 else "other"]
        rows.append(
            {
                "name": f"{' '.join(words)} item {n}",
                "price": f"{rng.choice([1, 5, 9, 20, 50])}.{n:02d}",
                "stock": 0 if n % 9 == 0 else rng.randint(1, 5),
                "status": "archived" if n % 11 == 0 else "active",
                "tags": ["odd"] if n % 13 == 0 else ["even"],
                "category_id": [None, root["id"], child["id"]][n % 3],
            }
        )
    products = await seed(editor, rows)
    return {"products": products, "root": root, "child": child, "empty": empty}


def matching(products: list[dict[str, Any]], params: dict[str, Any], tree: list[int]) -> list[Any]:
    def keep(p: dict[str, Any]) -> bool:
        if "q" in params and params["q"] not in p["name"]:
            return False
        if "category_id" in params and p["category_id"] not in tree:
            return False
        if "in_stock" in params and (p["stock"] > 0) != params["in_stock"]:
            return False
        if "status" in params and p["status"] != params["status"]:
            return False
        if "tag" in params and params["tag"] not in p["tags"]:
            return False
        if "min_price" in params and Decimal(p["price"]) < Decimal(params["min_price"]):
            return False
        return not ("max_price" in params and Decimal(p["price"]) > Decimal(params["max_price"]))

    return [p for p in products if keep(p)]


FILTERS = [
    {"q": "rare"},
    {"q": "common"},
    {"q": "nothing-matches"},
    {"tag": "odd"},
    {"tag": "no-such-tag"},
    {"in_stock": False},
    {"status": "archived", "in_stock": True},
    {"min_price": "5", "max_price": "9.99"},
    {"category_id": "root"},
    {"category_id": "child", "q": "common"},
    {"category_id": "empty"},
]


@pytest.mark.parametrize(
    "budgets", [(2, 8, 3), (1, 2, 1), (5, 5, 7), (1000, 20_000, 100_000)], ids=str
)
@pytest.mark.parametrize("sort", ["-created_at", "price", "-price", "name"])
async def test_every_way_of_reading_gives_the_same_pages(
    editor: httpx.AsyncClient,
    catalog: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    budgets: tuple[int, int, int],
    sort: str,
) -> None:
    monkeypatch.setattr(keyset, "PROBE_ROWS", budgets[0])
    monkeypatch.setattr(keyset, "MAX_PROBE_ROWS", budgets[1])
    # A search whose walks found nothing is collected in windows of this many rows.
    monkeypatch.setattr(keyset, "WINDOW_ROWS", budgets[2])
    trees = {
        "root": [catalog["root"]["id"], catalog["child"]["id"]],
        "child": [catalog["child"]["id"]],
        "empty": [catalog["empty"]["id"]],
    }
    for filters in FILTERS:
        params = dict(filters)
        tree: list[int] = []
        if "category_id" in params:
            tree = trees[params["category_id"]]
            params["category_id"] = tree[0]
        expected = expected_order(matching(catalog["products"], filters, tree), sort)
        listed = await all_pages(editor, sort=sort, limit=4, **params)
        assert [p["id"] for p in listed] == expected, filters


@pytest.mark.parametrize("window", [2, 5, 200])
@pytest.mark.parametrize("budgets", [(1, 2), (1, 8), (10, 250)], ids=str)
async def test_ranked_search_with_filters_finds_every_match_once(
    app: FastAPI,
    editor: httpx.AsyncClient,
    catalog: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    budgets: tuple[int, int],
    window: int,
) -> None:
    monkeypatch.setattr(app.state.product_queries, "rank_window", window)
    monkeypatch.setattr(ranked_search, "RANK_PROBE_ROWS_PER_PRODUCT", budgets[0])
    monkeypatch.setattr(ranked_search, "RANK_MAX_PROBE_ROWS_PER_PRODUCT", budgets[1])
    tree = [catalog["root"]["id"], catalog["child"]["id"]]
    searches = ({"q": "common"}, {"q": "rare", "in_stock": True}, {"q": "common", "tag": "odd"})
    for filters in searches:
        params = {**filters, "category_id": tree[0]}
        expected = matching(catalog["products"], params, tree)
        listed = await all_pages(editor, limit=3, **params)
        assert sorted(p["id"] for p in listed) == sorted(p["id"] for p in expected), filters
        assert len(listed) == len({p["id"] for p in listed})
