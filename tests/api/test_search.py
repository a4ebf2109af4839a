"""Full-text search: ranking, the ranked window, SKU prefixes, and plans made per search."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.db.session import read_connection
from app.services.listing import keyset
from app.services.pagination import CursorCodec
from app.services.product_queries import ProductFilters, list_products
from bench.explain_listing import plan_nodes
from tests.api.test_listing import all_pages, seed

pytestmark = pytest.mark.usefixtures("users")


def ids(products: list[dict[str, Any]]) -> list[int]:
    return [p["id"] for p in products]


async def test_words_match_whatever_their_form(editor: httpx.AsyncClient) -> None:
    (headphones,) = await seed(editor, [{"name": "Studio Headphones", "description": "Closed."}])
    await seed(editor, [{"name": "Desk lamp", "description": "Warm light."}])
    for q in ("headphone", "HEADPHONES", "studio headphone"):
        assert ids(await all_pages(editor, q=q)) == [headphones["id"]], q


async def test_more_occurrences_and_name_matches_rank_higher(editor: httpx.AsyncClient) -> None:
    once, in_name, twice = await seed(
        editor,
        [
            {"name": "Garden hose", "description": "Works with any brass fitting."},
            {"name": "Brass fitting", "description": "Solid."},
            {"name": "Tap", "description": "Brass body, brass handle."},
        ],
    )
    listed = await all_pages(editor, q="brass")
    assert ids(listed) == [in_name["id"], twice["id"], once["id"]]


async def test_a_sku_prefix_finds_its_products_first(editor: httpx.AsyncClient) -> None:
    named, first, second, _other = await seed(
        editor,
        [
            {"sku": "LAMP-1", "name": "Lamp for the qx-7 series"},
            {"sku": "QX-71", "name": "Bracket"},
            {"sku": "qx-79", "name": "Cable"},
            {"sku": "AQX-70", "name": "Stand"},
        ],
    )
    listed = await all_pages(editor, q="QX-7")
    assert ids(listed)[:2] == sorted([first["id"], second["id"]], reverse=True)
    assert named["id"] not in ids(listed)[:2]
    assert _other["id"] not in ids(listed)


@pytest.mark.parametrize("q", ["___", "a_c"])
async def test_like_wildcards_in_the_query_match_only_themselves(
    editor: httpx.AsyncClient, q: str
) -> None:
    await seed(editor, [{"sku": "ABC-1"}, {"sku": "XYZ-2"}])
    (literal,) = await seed(editor, [{"sku": f"{q}-3"}])
    assert ids(await all_pages(editor, q=q)) == [literal["id"]]
    assert await all_pages(editor, q="%%%") == []


class TestRankedWindow:
    """Only the most recently added matches are ranked; older ones follow, newest first."""

    WINDOW = 3

    @pytest.fixture(autouse=True)
    def small_window(self, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(app.state.product_queries, "rank_window", self.WINDOW)

    async def make(self, editor: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
        # Alternate strong (word in the name) and weak (word in the description) matches.
        return await seed(
            editor,
            [
                {"name": "Copper kettle", "description": "Boils."}
                if n % 2
                else {"name": "Kettle", "description": "A copper base."}
                for n in range(count)
            ],
        )

    @pytest.mark.parametrize("limit", [1, 2, 3, 5, 20])
    async def test_every_match_once_window_ranked_then_newest_first(
        self, editor: httpx.AsyncClient, limit: int
    ) -> None:
        products = await self.make(editor, 8)
        await seed(editor, [{"name": "Teapot", "description": "Porcelain."}])
        listed = ids(await all_pages(editor, q="copper", limit=limit))
        newest_first = list(reversed(products))
        window, older = newest_first[: self.WINDOW], newest_first[self.WINDOW :]
        strong = [p for p in window if p["name"].startswith("Copper")]
        weak = [p for p in window if not p["name"].startswith("Copper")]
        assert listed == ids(strong) + ids(weak) + ids(older)

    async def test_fewer_matches_than_the_window_are_all_ranked(
        self, editor: httpx.AsyncClient
    ) -> None:
        weak, strong = await self.make(editor, 2)
        assert ids(await all_pages(editor, q="copper", limit=1)) == [strong["id"], weak["id"]]

    async def test_products_added_while_paging_never_repeat_or_skip_older_ones(
        self, editor: httpx.AsyncClient
    ) -> None:
        products = await self.make(editor, 7)
        first = (await editor.get("/products", params={"q": "copper", "limit": 2})).json()
        await self.make(editor, 4)  # newer than the whole window
        rest = await all_pages(editor, q="copper", limit=2, cursor=first["next_cursor"])
        seen = ids(first["items"] + rest)
        assert sorted(seen) == sorted(ids(products))
        assert len(seen) == len(set(seen))

    async def test_a_ranked_cursor_does_not_fit_a_sort(self, editor: httpx.AsyncClient) -> None:
        await self.make(editor, 6)
        cursors = []
        cursor = None
        for _ in range(3):
            params = {"q": "copper", "limit": 2, **({"cursor": cursor} if cursor else {})}
            cursor = (await editor.get("/products", params=params)).json()["next_cursor"]
            cursors.append(cursor)
        for cursor in cursors:  # in the window, then beyond it
            response = await editor.get(
                "/products", params={"q": "copper", "sort": "-id", "cursor": cursor}
            )
            assert response.status_code == 422, response.text


class Recording:
    """An asyncpg connection that notes each statement and how it was run."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.statements: list[tuple[str, str]] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.statements.append(("cached", sql))
        return list(await self.connection.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.statements.append(("cached", sql))
        return await self.connection.fetchval(sql, *args)

    async def prepare(self, sql: str) -> asyncpg.prepared_stmt.PreparedStatement:
        self.statements.append(("fresh", sql))
        return await self.connection.prepare(sql)


async def test_a_generic_plan_still_walks_a_bounded_number_of_rows(
    app: FastAPI, editor: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After five runs PostgreSQL may plan a cached statement once for any values, guessing
    that 0.5% of products match any word; such a plan must still stop after the probe's
    budget. Collecting the matches is left to a plan made with the values."""
    monkeypatch.setattr(keyset, "PROBE_ROWS", 2)
    monkeypatch.setattr(keyset, "MAX_PROBE_ROWS", 2)
    await seed(editor, [{"name": "Walnut board"} for _ in range(3)])  # more than the budget
    async with read_connection(app.state.engine) as raw:
        recording = Recording(raw)
        await list_products(
            recording,  # type: ignore[arg-type]
            CursorCodec("test"),
            filters=ProductFilters(q="zebra"),
            sort="price",
            limit=20,
            cursor=None,
            rank_window=200,
        )
        probe = recording.statements[0][1]
        assert recording.statements[-1][0] == "fresh"
        assert all(how == "cached" for how, _ in recording.statements[:-1])
        await raw.execute("SET plan_cache_mode = force_generic_plan")
        await raw.execute(f"PREPARE probe AS {probe}")
        explained = await raw.fetchval("EXPLAIN (FORMAT JSON) EXECUTE probe('zebra', 'zebra%')")
        plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
        await raw.execute("DEALLOCATE probe; RESET plan_cache_mode")
    nodes = list(plan_nodes(plan))
    scans = [n for n in nodes if n.get("Relation Name") == "products"]
    assert [n["Node Type"] for n in scans] == ["Index Scan"], plan
    [bounded] = [n for n in nodes if n["Node Type"] == "Limit" and scans[0] in n.get("Plans", [])]
    assert bounded["Plan Rows"] <= keyset.PROBE_ROWS
    assert "@@" not in scans[0].get("Filter", "")  # the words are tested above the limit
