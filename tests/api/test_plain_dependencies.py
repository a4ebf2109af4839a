"""Plain routes answered without FastAPI's dependency solving (app.api.plain_dependencies):
the same answers as with it, and whatever a route depends on still applies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import fastapi.routing
import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response, Security
from sqlalchemy import text

from app.api.deps import Admin, Reader, SessionDep, get_reader
from app.api.plain_dependencies import PlainPlan
from app.api.routes import products
from app.api.routing import api_router
from app.core.config import Settings
from app.core.errors import Forbidden
from app.main import create_app
from tests.conftest import Users, bearer
from tests.factories import category_data, product_data

# Headers that belong to one response, not to the answer.
_PER_RESPONSE = {"x-request-id", "date", "server"}


@pytest.fixture(scope="module")
async def routed_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The same service with FastAPI solving every route's dependencies."""
    application = create_app(settings, fast_path=False)
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
        # Not valid: FastAPI builds the 422 (or the redirect, the 404), both ways.
        ("/products?limit=0", {}),
        ("/products?limit=abc", {}),
        ("/products?limit=2&limit=3", {}),
        ("/products?sort=bogus", {}),
        ("/products?unknown=1", {}),
        ("/products?q=", {}),
        ("/products?min_price=1.234", {}),
        ("/products?tag=" + "x" * 41, {}),
        ("/products?q=%FF%FE", {}),  # not UTF-8
        ("/products?limit=%00", {}),
        ("/products?q=a%00b", {}),
        ("/products?tag=", {}),
        ("/products?cursor=&limit=", {}),
        ("/products?" + "&".join(f"tag=t{n}" for n in range(21)), {}),  # over the 20 tags
        ("/products?limit=1e3", {}),
        ("/products?in_stock=yes&status=ACTIVE", {}),
        # Raised while answering: rendered by the app's exception handlers, both ways.
        ("/products?cursor=not-a-cursor", {}),
        ("/products?sort=price&cursor=" + "A" * 40, {}),
        (product, {}),
        (product, {"If-None-Match": f'"{first["version"]}"'}),
        (product, {"If-None-Match": '"999"'}),
        (product, {"If-None-Match": 'W/"1", "2"'}),
        (product, {"If-None-Match": "not a tag"}),
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
                    assert ours[0] < 500, (caller, path, headers, ours)
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


# A router of routes for the tests below, and the products router included again behind
# router-level dependencies, one plain and one with yield.


async def refuse_teapots(request: Request) -> None:
    if request.headers.get("x-teapot"):
        raise HTTPException(418, "I am a teapot")


async def refuse_teapots_with_yield(request: Request) -> AsyncIterator[None]:
    if request.headers.get("x-teapot"):
        raise HTTPException(418, "I am a teapot")
    yield


counted_calls: list[str] = []


async def counted(request: Request) -> int:
    counted_calls.append(request.url.path)
    return len(counted_calls)


async def via_first(n: Annotated[int, Depends(counted)]) -> int:
    return n


async def via_second(n: Annotated[int, Depends(counted)]) -> int:
    return n


extra = api_router(prefix="/extra")


@extra.get("/echo")
async def echo(
    _: Reader,
    n: Annotated[int, Query(ge=1, le=10)] = 1,
    x_tag: Annotated[str | None, Header()] = None,
) -> Response:
    return Response(f"{n} {x_tag}")


@extra.get("/admins")
async def admins_only(_: Admin) -> Response:
    return Response("ok")


@extra.get("/cached")
async def cached(
    a: Annotated[int, Depends(via_first)],
    b: Annotated[int, Depends(via_second)],
    c: Annotated[int, Depends(counted, use_cache=False)],
) -> Response:
    return Response(f"{a} {b} {c}")


@extra.get("/session")
async def with_session(session: SessionDep) -> Response:
    return Response(str(await session.scalar(text("SELECT 1"))))


@extra.get("/model")
async def returns_a_model(_: Reader) -> dict[str, int]:
    return {"one": 1}


@pytest.fixture(scope="module")
async def extended(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    application.include_router(extra)
    application.include_router(
        products.router, prefix="/guarded", dependencies=[Depends(refuse_teapots)]
    )
    application.include_router(
        products.router, prefix="/yielding", dependencies=[Depends(refuse_teapots_with_yield)]
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(autouse=True)
def forget_principals(users: Users, routed_app: FastAPI, extended: FastAPI) -> None:
    """`users` starts each test from new users; these apps must not remember the old ones."""
    for application in (routed_app, extended):
        application.state.principals._entries.clear()


@pytest.fixture
def solves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths FastAPI's dependency solving ran for, during the test."""
    seen: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(**kwargs: Any) -> Any:
        seen.append(kwargs["request"].url.path)
        return await solve(**kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return seen


def client_of(application: FastAPI, headers: dict[str, str]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application)
    return httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers)


class TestTheFastPath:
    async def test_the_two_reads_are_answered_without_solving(
        self,
        app: FastAPI,
        routed_app: FastAPI,
        catalog: dict[str, Any],
        users: Users,
        settings: Settings,
        solves: list[str],
    ) -> None:
        product = f"/products/{catalog['products'][0]['id']}"
        headers = bearer(settings, users.viewer, "viewer")
        async with client_of(app, headers) as client:
            assert (await client.get(product)).status_code == 200
            assert (await client.get("/products?tag=eco&sort=price")).status_code == 200
        assert solves == []
        async with client_of(routed_app, headers) as client:
            assert (await client.get(product)).status_code == 200
        assert solves == [product]

    async def test_a_request_that_does_not_validate_gets_fastapis_answer(
        self, app: FastAPI, users: Users, settings: Settings, solves: list[str]
    ) -> None:
        async with client_of(app, bearer(settings, users.viewer, "viewer")) as client:
            response = await client.get("/products?limit=0")
            not_a_tag = await client.get("/products/1", headers={"If-None-Match": "3"})
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["query", "limit"]
        assert not_a_tag.status_code == 422
        assert solves == ["/products", "/products/1"]

    async def test_conditional_requests_hold(
        self, app: FastAPI, catalog: dict[str, Any], users: Users, settings: Settings
    ) -> None:
        product = catalog["products"][0]
        current = f'"{product["version"]}"'
        async with client_of(app, bearer(settings, users.viewer, "viewer")) as client:
            fresh = await client.get(
                f"/products/{product['id']}", headers={"If-None-Match": current}
            )
            stale = await client.get(f"/products/{product['id']}", headers={"If-None-Match": '"0"'})
            any_tag = await client.get(f"/products/{product['id']}", headers={"If-None-Match": "*"})
        assert (fresh.status_code, fresh.headers["etag"], fresh.content) == (304, current, b"")
        assert (stale.status_code, stale.headers["etag"]) == (200, current)
        assert any_tag.status_code == 304

    async def test_dependency_overrides_apply(
        self, extended: FastAPI, catalog: dict[str, Any], users: Users, settings: Settings
    ) -> None:
        async def nobody(request: Request) -> None:
            raise Forbidden("overridden")

        product = f"/products/{catalog['products'][0]['id']}"
        async with client_of(extended, bearer(settings, users.viewer, "viewer")) as client:
            extended.dependency_overrides[get_reader] = nobody
            try:
                overridden = [await client.get(path) for path in (product, "/products")]
            finally:
                extended.dependency_overrides.clear()
            restored = await client.get(product)
        assert [r.status_code for r in overridden] == [403, 403]
        assert overridden[0].json()["detail"] == "overridden"
        assert restored.status_code == 200

    @pytest.mark.parametrize(("prefix", "solved"), [("/guarded", False), ("/yielding", True)])
    async def test_a_router_level_dependency_applies(
        self,
        extended: FastAPI,
        catalog: dict[str, Any],
        users: Users,
        settings: Settings,
        solves: list[str],
        prefix: str,
        solved: bool,
    ) -> None:
        product = f"{prefix}/products/{catalog['products'][0]['id']}"
        async with client_of(extended, bearer(settings, users.viewer, "viewer")) as client:
            refused = await client.get(product, headers={"X-Teapot": "1"})
            listed = await client.get(f"{prefix}/products", headers={"X-Teapot": "1"})
            served = await client.get(product)
        assert (refused.status_code, listed.status_code, served.status_code) == (418, 418, 200)
        assert served.json()["id"] == catalog["products"][0]["id"]
        # A plain dependency keeps the fast path; one with yield is FastAPI's to solve.
        assert bool(solves) is solved

    async def test_a_new_parameter_applies(
        self, extended: FastAPI, users: Users, settings: Settings, solves: list[str]
    ) -> None:
        async with client_of(extended, bearer(settings, users.viewer, "viewer")) as client:
            given = await client.get("/extra/echo?n=7", headers={"X-Tag": "blue"})
            default = await client.get("/extra/echo")
            out_of_range = await client.get("/extra/echo?n=11")
        assert (given.status_code, given.text) == (200, "7 blue")
        assert (default.status_code, default.text) == (200, "1 None")
        assert out_of_range.status_code == 422
        assert out_of_range.json()["errors"][0]["loc"] == ["query", "n"]
        assert solves == ["/extra/echo"]  # only the invalid one went to FastAPI

    async def test_role_checks_and_authentication_hold(
        self, extended: FastAPI, users: Users, settings: Settings, solves: list[str]
    ) -> None:
        async with client_of(extended, bearer(settings, users.viewer, "viewer")) as viewer:
            refused = await viewer.get("/extra/admins")
        async with client_of(extended, bearer(settings, users.admin, "admin")) as admin:
            allowed = await admin.get("/extra/admins")
        async with client_of(extended, {}) as anonymous:
            unauthenticated = await anonymous.get("/extra/admins")
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("/forbidden")
        assert (allowed.status_code, allowed.text) == (200, "ok")
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["www-authenticate"] == "Bearer"
        assert solves == []

    async def test_each_dependency_runs_once_per_request_unless_uncached(
        self, extended: FastAPI, users: Users
    ) -> None:
        counted_calls.clear()
        async with client_of(extended, {}) as client:
            response = await client.get("/extra/cached")
        # `counted` ran once for both its cached users and once more for the uncached one.
        assert (response.status_code, response.text) == (200, "1 1 2")
        assert counted_calls == ["/extra/cached", "/extra/cached"]

    async def test_routes_that_are_not_plain_are_fastapis(
        self, extended: FastAPI, users: Users, settings: Settings, solves: list[str]
    ) -> None:
        async with client_of(extended, bearer(settings, users.viewer, "viewer")) as client:
            session = await client.get("/extra/session")
            model = await client.get("/extra/model")
        assert (session.status_code, session.text) == (200, "1")
        assert (model.status_code, model.json()) == (200, {"one": 1})
        assert solves == ["/extra/session", "/extra/model"]


# Endpoints at module level: FastAPI resolves their (postponed) annotations in its globals.


def sync_dependency() -> int:
    return 1


class ClassDependency:
    pass


async def query_dependency(q: int = 1) -> int:
    return q


async def yielding() -> AsyncIterator[int]:
    yield 1


async def plain(n: Annotated[int, Depends(via_first)], q: int = 1) -> Response:
    return Response()


async def with_yield(n: Annotated[int, Depends(yielding)]) -> Response:
    return Response()


async def with_sync(n: Annotated[int, Depends(sync_dependency)]) -> Response:
    return Response()


async def with_class(n: Annotated[ClassDependency, Depends()]) -> Response:
    return Response()


async def with_cookie(sid: Annotated[str | None, fastapi.Cookie()] = None) -> Response:
    return Response()


async def with_body(body: dict[str, int]) -> Response:
    return Response()


async def with_response(response: Response) -> Response:
    return response


async def with_model() -> dict[str, int]:
    return {}


async def with_query_dependency(q: Annotated[int, Depends(query_dependency)]) -> Response:
    return Response()


def sync_endpoint() -> Response:
    return Response()


async def with_scopes(n: Annotated[int, Security(via_first, scopes=["read"])]) -> Response:
    return Response()


NOT_PLAIN = [
    with_yield,
    with_sync,
    with_class,
    with_cookie,
    with_body,
    with_response,
    with_model,
    with_query_dependency,
    sync_endpoint,
    with_scopes,
]


class TestWhichRoutesArePlain:
    def plan(self, endpoint: Any) -> PlainPlan | None:
        router = api_router()
        router.get("/x")(endpoint)
        route = router.routes[0]
        assert isinstance(route, fastapi.routing.APIRoute)
        return PlainPlan.of(route)

    def test_the_service_reads_are(self) -> None:
        by_endpoint = {route.endpoint: route for route in products.router.routes}  # type: ignore[attr-defined]
        for endpoint in (products.get_product, products.list_products):
            assert PlainPlan.of(by_endpoint[endpoint]) is not None

    def test_async_dependencies_of_the_request_are(self) -> None:
        assert self.plan(plain) is not None

    @pytest.mark.parametrize("endpoint", NOT_PLAIN, ids=[e.__name__ for e in NOT_PLAIN])
    def test_anything_else_is_not(self, endpoint: Any) -> None:
        assert self.plan(endpoint) is None
