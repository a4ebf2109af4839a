"""The OpenAPI document says what the service answers: errors as problem+json with the
problem schemas, the headers they carry, and parameters of the form the service enforces."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from app.services.pagination import CursorCodec

pytestmark = pytest.mark.usefixtures("users")
METHODS = {"get", "post", "patch", "delete", "put"}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_no_error_is_documented_as_application_json(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            assert list(response.get("content", {})) == ["application/problem+json"], (
                method,
                path,
                status,
            )
            schema = response["content"]["application/problem+json"]["schema"]
            expected = "ValidationProblem" if status == "422" else "Problem"
            assert schema == {"$ref": f"#/components/schemas/{expected}"}, (method, path, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_problem_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    required = {"type", "title", "status", "detail", "instance", "request_id"}
    assert set(schemas["Problem"]["required"]) == required
    assert set(schemas["ValidationProblem"]["required"]) == required | {"errors"}


def test_cross_cutting_statuses_and_headers(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        responses = operation["responses"]
        where = (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= responses.keys(), where
        if "401" in responses:
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"], where
        for status in ("429", "503"):
            if status in responses:
                assert responses[status]["headers"]["Retry-After"]["required"], where
        for response in responses.values():
            assert response["headers"]["X-Request-ID"]["required"], where
        for parameter in operation.get("parameters", ()):
            # HTTP has no null: an optional parameter is absent, not "null".
            assert (
                "anyOf" not in parameter["schema"]
                or {"type": "null"} not in parameter["schema"]["anyOf"]
            ), (where, parameter["name"])


def _parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    [parameter] = [
        p for p in document["paths"][path][method]["parameters"] if p["name"].lower() == name
    ]
    schema: dict[str, Any] = parameter["schema"]
    return schema


@pytest.mark.parametrize("value", ['"3"', "*", 'W/"3", "4"', '"abc"', '""'])
async def test_if_match_of_the_documented_form_is_accepted(
    document: dict[str, Any], editor: httpx.AsyncClient, value: str
) -> None:
    pattern = _parameter(document, "/products/{product_id}", "patch", "if-match")["pattern"]
    assert re.match(pattern, value)
    response = await editor.patch("/products/7", json={"stock": 1}, headers={"If-Match": value})
    assert response.status_code == 404  # no such product: the header itself was accepted


@pytest.mark.parametrize("value", ["null", "abc", "3", '"a b"', '"3'])
async def test_if_match_of_another_form_is_422(
    document: dict[str, Any], editor: httpx.AsyncClient, value: str
) -> None:
    pattern = _parameter(document, "/products/{product_id}", "patch", "if-match")["pattern"]
    assert not re.match(pattern, value)
    response = await editor.patch("/products/7", json={"stock": 1}, headers={"If-Match": value})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["header", "If-Match"]


async def test_a_well_formed_tag_not_of_ours_is_a_failed_precondition(
    editor: httpx.AsyncClient,
) -> None:
    created = await editor.post(
        "/products", json={"sku": "S-1", "name": "n", "price": "1", "currency": "EUR"}
    )
    url = f"/products/{created.json()['id']}"
    assert (
        await editor.patch(url, json={"stock": 1}, headers={"If-Match": '"abc"'})
    ).status_code == 412
    assert (await editor.get(url, headers={"If-None-Match": '"abc"'})).status_code == 200


@pytest.mark.parametrize("hot_path", [True, False])
async def test_if_none_match_of_another_form_is_422_on_both_read_paths(
    editor: httpx.AsyncClient, hot_path: bool
) -> None:
    created = await editor.post(
        "/products", json={"sku": "S-1", "name": "n", "price": "1", "currency": "EUR"}
    )
    url = f"/products/{created.json()['id']}"
    # A query parameter the fast path does not know sends the request on to FastAPI.
    params = {} if hot_path else {"unknown": "1"}
    response = await editor.get(url, headers={"If-None-Match": "null"}, params=params)
    if hot_path:
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["header", "If-None-Match"]
    else:
        assert response.status_code == 422
    current = await editor.get(url, headers={"If-None-Match": '"1"'})
    assert current.status_code == 304
    assert current.headers["etag"] == '"1"'


def test_documented_parameter_forms(document: dict[str, Any]) -> None:
    listing = "/products"
    limit = _parameter(document, listing, "get", "limit")
    assert (limit["minimum"], limit["maximum"]) == (1, 100)
    cursor = _parameter(document, listing, "get", "cursor")
    assert cursor["maxLength"] == 512
    # The form the codec writes, signature and all.
    assert re.match(cursor["pattern"], CursorCodec("a secret").encode("-created_at", ["x", 7]))
    assert "-created_at" in _parameter(document, listing, "get", "sort")["enum"]
    key = _parameter(document, "/products", "post", "idempotency-key")
    assert (key["minLength"], key["maxLength"]) == (1, 255)
    assert key["pattern"]


@pytest.mark.parametrize("body", [{"category_id": True}, {"stock": True}])
async def test_a_boolean_is_not_an_integer(editor: httpx.AsyncClient, body: dict[str, Any]) -> None:
    # make fuzz found `{"category_id": true}` taken as category 1 (pydantic's lax mode).
    created = await editor.post(
        "/products", json={"sku": "S-1", "name": "n", "price": "1", "currency": "EUR"}
    )
    response = await editor.patch(f"/products/{created.json()['id']}", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", *body]


def test_integer_bounds_are_exact(document: dict[str, Any]) -> None:
    # FastAPI's OpenAPI model makes floats of them; float(2**63 - 1) is 2**63.
    category_id = document["components"]["schemas"]["ProductCreate"]["properties"]["category_id"]
    [bounded] = [branch for branch in category_id["anyOf"] if branch["type"] == "integer"]
    assert bounded["maximum"] == 2**63 - 1
    assert isinstance(bounded["maximum"], int)
    update = document["components"]["schemas"]["ProductUpdate"]["properties"]
    assert update["stock"]["type"] == "integer"  # not nullable: null is refused
    assert {"type": "null"} in update["category_id"]["anyOf"]  # null clears it
