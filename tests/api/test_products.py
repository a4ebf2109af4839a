from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.factories import category_data, product_data

pytestmark = pytest.mark.usefixtures("users")


async def create(client: httpx.AsyncClient, **overrides: object) -> dict[str, object]:
    response = await client.post("/products", json=product_data(**overrides))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


class TestCreateProduct:
    async def test_created_with_location_etag_and_normalised_fields(
        self, editor: httpx.AsyncClient
    ) -> None:
        response = await editor.post("/products", json=product_data(price=5, sku="Abc-1"))
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/products/{body['id']}"
        assert response.headers["etag"] == '"1"'
        assert body["price"] == "5.00"
        assert body["currency"] == "EUR"
        assert body["tags"] == ["sale", "new"]
        assert body["version"] == 1
        assert body["created_at"].endswith("Z")

    async def test_read_path_renders_the_same_json_as_the_write_path(
        self, editor: httpx.AsyncClient
    ) -> None:
        created = await create(editor, price="1234567890.10", description="naïve ☃ text")
        fetched = await editor.get(f"/products/{created['id']}")
        assert fetched.json() == created
        listed = await editor.get("/products")
        assert listed.json()["items"] == [created]

    async def test_json_number_price_keeps_its_exact_decimal(
        self, editor: httpx.AsyncClient
    ) -> None:
        response = await editor.post(
            "/products",
            content=b'{"sku": "P-1", "name": "n", "price": 0.29, "currency": "USD"}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 201
        assert response.json()["price"] == "0.29"

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("price", "-1"),
            ("price", "1.234"),
            ("price", "12345678901"),
            ("price", "NaN"),
            ("sku", "bad sku"),
            ("sku", ""),
            ("name", "   "),
            ("currency", "EURO"),
            ("stock", -1),
            ("stock", 2**63),
            ("status", "deleted"),
            ("tags", [f"t{i}" for i in range(21)]),
            ("attributes", {"nested": {"a": 1}}),
            ("name", "nul\x00byte"),
            ("description", "x" * 10_001),
        ],
    )
    async def test_invalid_field_is_422_problem(
        self, editor: httpx.AsyncClient, field: str, value: object
    ) -> None:
        response = await editor.post("/products", json=product_data(**{field: value}))
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 422
        assert any(field in error["loc"] for error in problem["errors"])

    async def test_lone_surrogate_is_422(self, editor: httpx.AsyncClient) -> None:
        body = b'{"sku": "S-1", "name": "bad \\ud800", "price": "1", "currency": "EUR"}'
        response = await editor.post(
            "/products", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422

    async def test_huge_integer_is_422(self, editor: httpx.AsyncClient) -> None:
        body = b'{"sku": "S-1", "name": "n", "price": "1", "currency": "EUR", "stock": 1' + (
            b"0" * 5000 + b"}"
        )
        response = await editor.post(
            "/products", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422

    async def test_unknown_category_is_422(self, editor: httpx.AsyncClient) -> None:
        response = await editor.post("/products", json=product_data(category_id=999))
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "category_id"]

    async def test_duplicate_sku_is_409_case_insensitive(self, editor: httpx.AsyncClient) -> None:
        await create(editor, sku="DUP-1")
        response = await editor.post("/products", json=product_data(sku="dup-1"))
        assert response.status_code == 409
        assert response.json()["type"] == "/problems/sku-taken"

    async def test_concurrent_creates_of_one_sku_give_one_201(
        self, editor: httpx.AsyncClient
    ) -> None:
        responses = await asyncio.gather(
            *(editor.post("/products", json=product_data(sku="RACE-1")) for _ in range(10))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [201] + [409] * 9

    async def test_malformed_json_is_400(self, editor: httpx.AsyncClient) -> None:
        response = await editor.post(
            "/products", content=b'{"sku": ', headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"

    async def test_wrong_content_type_is_415(self, editor: httpx.AsyncClient) -> None:
        response = await editor.post(
            "/products", content=b"sku=x", headers={"content-type": "text/plain"}
        )
        assert response.status_code == 415

    async def test_unknown_field_is_422(self, editor: httpx.AsyncClient) -> None:
        response = await editor.post("/products", json=product_data(colour="red"))
        assert response.status_code == 422

    async def test_viewer_cannot_create(self, viewer: httpx.AsyncClient) -> None:
        response = await viewer.post("/products", json=product_data())
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"

    async def test_anonymous_is_401_with_bearer_challenge(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/products", json=product_data())
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


class TestReadProduct:
    async def test_if_none_match_gives_304(self, editor: httpx.AsyncClient) -> None:
        product = await create(editor)
        response = await editor.get(f"/products/{product['id']}", headers={"If-None-Match": '"1"'})
        assert response.status_code == 304
        assert response.headers["etag"] == '"1"'
        stale = await editor.get(f"/products/{product['id']}", headers={"If-None-Match": '"0"'})
        assert stale.status_code == 200

    @pytest.mark.parametrize("product_id", ["0", str(2**63)])
    async def test_id_out_of_range_is_422(self, viewer: httpx.AsyncClient, product_id: str) -> None:
        assert (await viewer.get(f"/products/{product_id}")).status_code == 422

    @pytest.mark.parametrize("product_id", ["abc", "-5"])
    async def test_id_not_digits_is_404(self, viewer: httpx.AsyncClient, product_id: str) -> None:
        # An id is digits: anything else names no resource (and /products/export stays a path).
        assert (await viewer.get(f"/products/{product_id}")).status_code == 404

    async def test_missing_is_404_problem(self, viewer: httpx.AsyncClient) -> None:
        response = await viewer.get("/products/424242")
        assert response.status_code == 404
        problem = response.json()
        assert problem["instance"] == "/products/424242"
        assert problem["request_id"] == response.headers["x-request-id"]


class TestUpdateProduct:
    async def test_partial_update_bumps_version_and_updated_at(
        self, editor: httpx.AsyncClient
    ) -> None:
        product = await create(editor)
        response = await editor.patch(f"/products/{product['id']}", json={"price": "7.5"})
        assert response.status_code == 200
        body = response.json()
        assert body["price"] == "7.50"
        assert body["name"] == product["name"]
        assert body["version"] == 2
        assert response.headers["etag"] == '"2"'
        assert body["updated_at"] > product["updated_at"]
        assert body["created_at"] == product["created_at"]
        assert (await editor.get(f"/products/{product['id']}")).json() == body

    async def test_null_clears_category_but_not_name(self, editor: httpx.AsyncClient) -> None:
        category = (await editor.post("/categories", json=category_data())).json()
        product = await create(editor, category_id=category["id"])
        cleared = await editor.patch(f"/products/{product['id']}", json={"category_id": None})
        assert cleared.json()["category_id"] is None
        refused = await editor.patch(f"/products/{product['id']}", json={"name": None})
        assert refused.status_code == 422

    async def test_stale_if_match_is_412(self, editor: httpx.AsyncClient) -> None:
        product = await create(editor)
        url = f"/products/{product['id']}"
        assert (await editor.patch(url, json={"stock": 1}, headers={"If-Match": '"1"'})).is_success
        stale = await editor.patch(url, json={"stock": 2}, headers={"If-Match": '"1"'})
        assert stale.status_code == 412

    async def test_concurrent_patches_with_same_if_match_one_wins(
        self, editor: httpx.AsyncClient
    ) -> None:
        product = await create(editor)
        url = f"/products/{product['id']}"
        responses = await asyncio.gather(
            *(editor.patch(url, json={"stock": n}, headers={"If-Match": '"1"'}) for n in range(8))
        )
        assert sorted(r.status_code for r in responses) == [200] + [412] * 7
        assert (await editor.get(url)).json()["version"] == 2

    async def test_taking_another_products_sku_is_409(self, editor: httpx.AsyncClient) -> None:
        await create(editor, sku="TAKEN")
        other = await create(editor)
        response = await editor.patch(f"/products/{other['id']}", json={"sku": "taken"})
        assert response.status_code == 409


class TestDeleteProduct:
    async def test_soft_delete_hides_product_and_frees_sku(self, editor: httpx.AsyncClient) -> None:
        product = await create(editor, sku="GONE-1")
        url = f"/products/{product['id']}"
        assert (await editor.delete(url)).status_code == 204
        assert (await editor.get(url)).status_code == 404
        assert (await editor.patch(url, json={"stock": 1})).status_code == 404
        assert (await editor.delete(url)).status_code == 404
        assert (await editor.get("/products")).json()["items"] == []
        again = await create(editor, sku="gone-1")
        assert again["id"] != product["id"]
