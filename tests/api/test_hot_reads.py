"""The hot-read middleware answers exactly as FastAPI's routes do, and only what it understands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.api.hot_reads import HotReadsMiddleware
from app.core.config import Settings
from app.main import create_app
from tests.conftest import Users, bearer
from tests.factories import category_data, product_data

# Headers that belong to one response, not to the answer.
_PER_RESPONSE = {"x-request-id", "date", "server"}


@pytest.fixture(scope="module")
async def routed_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The same service with the hot reads left to FastAPI's routing."""
    application = create_app(settings, hot_reads=False)
    async with application.router.lifespan_context(application):
        yield application


def answer(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {k: v for k, v in response.headers.items() if k not in _PER_RESPONSE}
    body: Any = response.content
    if response.headers.get("content-type", "").endswith("json"):
        body = response.json()
        if isinstance(body, dict):
            body.pop("request_id", None)
    return response.status_code, headers, body


@pytest.fixture
async def catalog(editor: httpx.AsyncClient) -> dict[str, Any]:
    parent = (await editor.post("/categories", json=category_data())).json()
    child = (await editor.post("/categories", json=category_data(parent_id=parent["id"]))).json()
    products = []
    for n in range(7):
        row = product_data(
            name=f"Steel lamp {n}" if n % 2 else f"Oak desk {n}",
            price=f"{5 + n}.50",
            stock=n % 3,
            tags=["eco", "gift"] if n % 2 else ["eco"],
            category_id=child["id"] if n % 3 else None,
            status="active" if n % 4 else "draft",
        )
        response = await editor.post("/products", json=row)
        assert response.status_code == 201, response.text
        products.append(response.json())
    deleted = products.pop()
    assert (await editor.delete(f"/products/{deleted['id']}")).status_code == 204
    return {"parent": parent, "products": products, "deleted": deleted}


def requests_to_compare(catalog: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    first = catalog["products"][0]
    product = f"/products/{first['id']}"
    return [
        ("/products", {}),
        ("/products?limit=2", {}),
        ("/products?limit=2&sort=price", {}),
        ("/products?sort=-name&limit=3", {}),
        ("/products?q=steel", {}),
        ("/products?q=lamp&sort=-price&limit=1", {}),
        ("/products?tag=gift&tag=eco", {}),
        (f"/products?category_id={catalog['parent']['id']}", {}),
        ("/products?category_id=999999", {}),
        ("/products?min_price=6&max_price=9.5&in_stock=true&status=active", {}),
        ("/products?in_stock=false", {}),
        # Not for the middleware: FastAPI answers these, both ways.
        ("/products?limit=0", {}),
        ("/products?limit=abc", {}),
        ("/products?limit=2&limit=3", {}),
        ("/products?sort=bogus", {}),
        ("/products?unknown=1", {}),
        ("/products?q=", {}),
        ("/products?min_price=1.234", {}),
        ("/products?tag=" + "x" * 41, {}),
        # Raised while answering: rendered by the app's exception handlers, both ways.
        ("/products?cursor=not-a-cursor", {}),
        ("/products?sort=price&cursor=" + "A" * 40, {}),
        (product, {}),
        (product, {"If-None-Match": f'"{first["version"]}"'}),
        (product, {"If-None-Match": '"999"'}),
        (f"/products/{catalog['deleted']['id']}", {}),
        ("/products/999999", {}),
        ("/products/0", {}),
        ("/products/-1", {}),
        ("/products/abc", {}),
        ("/products/9223372036854775807", {}),
        ("/products/9223372036854775808", {}),
        ("/products/" + "9" * 5000, {}),
        ("/products/%D9%A1", {}),  # an Arabic-Indic digit one: not an id
        (product + "/", {}),
        ("/products/", {}),
    ]


class TestSameAnswers:
    async def test_every_read_answers_as_the_routes_do(
        self,
        app: FastAPI,
        routed_app: FastAPI,
        catalog: dict[str, Any],
        users: Users,
        settings: Settings,
    ) -> None:
        callers = {
            "viewer": bearer(settings, users.viewer, "viewer"),
            "anonymous": {},
            "bad token": {"Authorization": "Bearer not-a-token"},
            "basic auth": {"Authorization": "Basic dXNlcjpwYXNz"},
        }
        served = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        routed = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=routed_app), base_url="http://t"
        )
        async with served, routed:
            page = await served.get("/products?limit=2&sort=price", headers=callers["viewer"])
            cursor = page.json()["next_cursor"]
            ranked = await served.get("/products?q=product&limit=2", headers=callers["viewer"])
            extra = [
                (f"/products?limit=2&sort=price&cursor={cursor}", {}),
                (f"/products?q=product&limit=2&cursor={ranked.json()['next_cursor']}", {}),
                (f"/products?sort=name&cursor={cursor}", {}),  # another sort's cursor
            ]
            statuses = set()
            for path, headers in requests_to_compare(catalog) + extra:
                for caller, auth in callers.items():
                    both = {**auth, **headers}
                    ours = answer(await served.get(path, headers=both))
                    theirs = answer(await routed.get(path, headers=both))
                    assert ours == theirs, (caller, path, headers)
                    statuses.add(ours[0])
        assert statuses >= {200, 304, 401, 404, 422, 307}

    async def test_a_deactivated_users_token_is_refused_as_by_the_routes(
        self, app: FastAPI, routed_app: FastAPI, users: Users, settings: Settings
    ) -> None:
        async with app.state.engine.begin() as connection:
            await connection.execute(
                text("UPDATE users SET is_active = false WHERE id = :id"), {"id": users.viewer}
            )
        for application in (app, routed_app):
            application.state.principals.invalidate(users.viewer)
        headers = bearer(settings, users.viewer, "viewer")
        for application in (app, routed_app):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/products", headers=headers)
                assert response.status_code == 401
                assert response.headers["www-authenticate"] == "Bearer"


class _Downstream:
    """Stands in for FastAPI behind the middleware: records what was passed on."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class TestWhatItAnswers:
    @pytest.fixture
    def downstream(self, app: FastAPI) -> tuple[_Downstream, httpx.AsyncClient]:
        passed_on = _Downstream()
        middleware = HotReadsMiddleware(passed_on)  # type: ignore[arg-type]

        async def with_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["app"] = app  # as Starlette sets it before the middleware stack
            await middleware(scope, receive, send)

        transport = httpx.ASGITransport(app=with_app)  # type: ignore[arg-type]
        return passed_on, httpx.AsyncClient(transport=transport, base_url="http://t")

    async def test_answers_valid_reads_itself(
        self,
        downstream: tuple[_Downstream, httpx.AsyncClient],
        catalog: dict[str, Any],
        viewer: httpx.AsyncClient,
    ) -> None:
        passed_on, client = downstream
        headers = {"Authorization": viewer.headers["Authorization"]}
        product = catalog["products"][0]
        async with client:
            one = await client.get(f"/products/{product['id']}", headers=headers)
            page = await client.get("/products?tag=eco&sort=price&limit=2", headers=headers)
            missing = await client.get("/products/999999", headers=headers)
            anonymous = await client.get("/products")
        assert passed_on.paths == []
        assert (one.status_code, one.json()["id"]) == (200, product["id"])
        assert (page.status_code, len(page.json()["items"])) == (200, 2)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert anonymous.status_code == 401

    @pytest.mark.parametrize(
        "path",
        [
            "/products?limit=0",
            "/products?limit=1&limit=2",
            "/products?nope=1",
            "/products/abc",
            "/products/0",
            "/products/",
            "/products/export",
            "/productsx",
            "/categories",
        ],
    )
    async def test_passes_on_what_it_does_not_understand(
        self, downstream: tuple[_Downstream, httpx.AsyncClient], path: str
    ) -> None:
        passed_on, client = downstream
        async with client:
            response = await client.get(path)
        assert response.status_code == 599
        assert passed_on.paths == [path.split("?")[0]]

    async def test_passes_on_other_methods(
        self, downstream: tuple[_Downstream, httpx.AsyncClient]
    ) -> None:
        passed_on, client = downstream
        async with client:
            for method in ("HEAD", "POST", "DELETE", "OPTIONS"):
                response = await client.request(method, "/products/1")
                assert response.status_code == 599
        assert len(passed_on.paths) == 4
