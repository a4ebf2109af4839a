from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.factories import category_data, product_data

pytestmark = pytest.mark.usefixtures("users")


async def create(client: httpx.AsyncClient, **overrides: object) -> dict[str, object]:
    response = await client.post("/categories", json=category_data(**overrides))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


class TestCreateCategory:
    async def test_created_with_location(self, editor: httpx.AsyncClient) -> None:
        response = await editor.post("/categories", json=category_data(slug="shoes"))
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/categories/{body['id']}"
        assert body["slug"] == "shoes"
        assert body["parent_id"] is None

    async def test_duplicate_slug_is_409(self, editor: httpx.AsyncClient) -> None:
        await create(editor, slug="dup")
        response = await editor.post("/categories", json=category_data(slug="dup"))
        assert response.status_code == 409
        assert response.json()["type"] == "/problems/slug-taken"

    async def test_missing_parent_is_422(self, editor: httpx.AsyncClient) -> None:
        response = await editor.post("/categories", json=category_data(parent_id=9999))
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "parent_id"]

    @pytest.mark.parametrize("slug", ["Upper", "with space", "", "x" * 81, "ünï"])
    async def test_bad_slug_is_422(self, editor: httpx.AsyncClient, slug: str) -> None:
        assert (await editor.post("/categories", json=category_data(slug=slug))).status_code == 422

    async def test_viewer_cannot_create(self, viewer: httpx.AsyncClient) -> None:
        assert (await viewer.post("/categories", json=category_data())).status_code == 403


class TestCategoryTree:
    async def test_move_under_own_descendant_is_422(self, editor: httpx.AsyncClient) -> None:
        root = await create(editor)
        child = await create(editor, parent_id=root["id"])
        grandchild = await create(editor, parent_id=child["id"])
        response = await editor.patch(
            f"/categories/{root['id']}", json={"parent_id": grandchild["id"]}
        )
        assert response.status_code == 422
        own = await editor.patch(f"/categories/{root['id']}", json={"parent_id": root["id"]})
        assert own.status_code == 422

    async def test_concurrent_opposite_moves_cannot_close_a_cycle(
        self, editor: httpx.AsyncClient
    ) -> None:
        a, b = await create(editor), await create(editor)
        results = await asyncio.gather(
            editor.patch(f"/categories/{a['id']}", json={"parent_id": b["id"]}),
            editor.patch(f"/categories/{b['id']}", json={"parent_id": a["id"]}),
        )
        assert sorted(r.status_code for r in results) == [200, 422]

    async def test_move_and_rename(self, editor: httpx.AsyncClient) -> None:
        parent, other = await create(editor), await create(editor)
        child = await create(editor, parent_id=parent["id"])
        response = await editor.patch(
            f"/categories/{child['id']}", json={"parent_id": other["id"], "name": " Renamed "}
        )
        assert response.status_code == 200
        assert response.json()["parent_id"] == other["id"]
        assert response.json()["name"] == "Renamed"
        assert response.json()["updated_at"] > child["updated_at"]

    async def test_product_filter_includes_descendants(self, editor: httpx.AsyncClient) -> None:
        root = await create(editor)
        child = await create(editor, parent_id=root["id"])
        leaf = await create(editor, parent_id=child["id"])
        elsewhere = await create(editor)
        in_tree = []
        for category in (root, child, leaf):
            created = await editor.post("/products", json=product_data(category_id=category["id"]))
            in_tree.append(created.json()["id"])
        await editor.post("/products", json=product_data(category_id=elsewhere["id"]))
        await editor.post("/products", json=product_data())
        listed = await editor.get("/products", params={"category_id": root["id"], "sort": "id"})
        assert [p["id"] for p in listed.json()["items"]] == in_tree
        listed = await editor.get("/products", params={"category_id": leaf["id"]})
        assert [p["id"] for p in listed.json()["items"]] == in_tree[2:]


class TestDeleteCategory:
    async def test_with_children_or_products_is_409(self, editor: httpx.AsyncClient) -> None:
        parent = await create(editor)
        await create(editor, parent_id=parent["id"])
        assert (await editor.delete(f"/categories/{parent['id']}")).status_code == 409
        holder = await create(editor)
        product = await editor.post("/products", json=product_data(category_id=holder["id"]))
        assert (await editor.delete(f"/categories/{holder['id']}")).status_code == 409
        await editor.delete(f"/products/{product.json()['id']}")
        assert (await editor.delete(f"/categories/{holder['id']}")).status_code == 204
        assert (await editor.get(f"/categories/{holder['id']}")).status_code == 404

    async def test_missing_is_404(self, editor: httpx.AsyncClient) -> None:
        assert (await editor.delete("/categories/777")).status_code == 404


class TestListCategories:
    async def test_keyset_pages_cover_all_once(
        self, viewer: httpx.AsyncClient, editor: httpx.AsyncClient
    ) -> None:
        ids = [(await create(editor))["id"] for _ in range(5)]
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, object] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await viewer.get("/categories", params=params)).json()
            seen += [c["id"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids

    async def test_unknown_parameter_is_422(self, viewer: httpx.AsyncClient) -> None:
        assert (await viewer.get("/categories", params={"page": 2})).status_code == 422

    async def test_anonymous_is_401(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/categories")).status_code == 401
