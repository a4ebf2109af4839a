"""Every way of presenting a bad credential gets 401 problem+json with WWW-Authenticate: Bearer;
every role gets exactly the access SPEC.md's table gives it (403 otherwise)."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from jose import jwt
from sqlalchemy import text

from app.core.config import Settings
from app.core.security import create_access_token
from tests.conftest import PASSWORD, TEST_SECRET, Users, bearer
from tests.factories import category_data, product_data

pytestmark = pytest.mark.usefixtures("users", "isolated_throttle")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(settings: Settings, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "sub": "3",
        "role": "viewer",
        "type": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "jti": "j1",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        **overrides,
    }
    return {key: value for key, value in values.items() if value is not None}


def signed(settings: Settings, key: str = TEST_SECRET, alg: str = "HS256", **overrides: Any) -> str:
    return str(jwt.encode(claims(settings, **overrides), key, algorithm=alg))


def alg_none(settings: Settings) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims(settings, sub="1", role="admin")).encode())
    return f"{header}.{payload}."


def tampered(settings: Settings) -> str:
    token, _ = create_access_token(settings, user_id=3, role="viewer")
    header, payload, signature = token.split(".")
    body = json.loads(unb64(payload))
    body.update(role="admin", sub="1")
    return f"{header}.{b64(json.dumps(body).encode())}.{signature}"


async def login(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await client.post("/auth/token", data={"username": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 401
    assert "Traceback" not in response.text


FORGED: dict[str, Callable[[Settings], dict[str, str]]] = {
    "no token": lambda s: {},
    "empty bearer": lambda s: {"Authorization": "Bearer "},
    "malformed": lambda s: {"Authorization": "Bearer not-a-jwt"},
    "three junk segments": lambda s: {"Authorization": "Bearer a.b.c"},
    "basic scheme": lambda s: {"Authorization": "Basic YWRtaW46YWRtaW4="},
    "alg none": lambda s: {"Authorization": f"Bearer {alg_none(s)}"},
    "wrong key": lambda s: {"Authorization": f"Bearer {signed(s, key='x' * 43)}"},
    "HS512 with the right key": lambda s: {"Authorization": f"Bearer {signed(s, alg='HS512')}"},
    "tampered payload": lambda s: {"Authorization": f"Bearer {tampered(s)}"},
    "wrong aud": lambda s: {"Authorization": f"Bearer {signed(s, aud='other-api')}"},
    "wrong iss": lambda s: {"Authorization": f"Bearer {signed(s, iss='evil-issuer')}"},
    "no exp": lambda s: {"Authorization": f"Bearer {signed(s, exp=None)}"},
    "type refresh": lambda s: {"Authorization": f"Bearer {signed(s, type='refresh')}"},
    "no type": lambda s: {"Authorization": f"Bearer {signed(s, type=None)}"},
    "sub not an id": lambda s: {"Authorization": f"Bearer {signed(s, sub='admin')}"},
    "unknown role": lambda s: {"Authorization": f"Bearer {signed(s, role='root')}"},
    "unknown user": lambda s: {"Authorization": f"Bearer {signed(s, sub='999')}"},
}


class TestForgedAccessTokens:
    @pytest.mark.parametrize("attack", list(FORGED))
    async def test_is_401(self, client: httpx.AsyncClient, settings: Settings, attack: str) -> None:
        assert_401(await client.get("/products", headers=FORGED[attack](settings)))

    async def test_the_honest_token_used_for_the_forgeries_works(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        honest = {"Authorization": f"Bearer {signed(settings)}"}
        assert (await client.get("/products", headers=honest)).status_code == 200

    @pytest.mark.parametrize("attack", ["alg none", "tampered payload"])
    async def test_escalation_to_admin_fails_on_admin_routes(
        self, client: httpx.AsyncClient, settings: Settings, attack: str
    ) -> None:
        assert_401(await client.get("/users", headers=FORGED[attack](settings)))


class TestExpiry:
    async def test_expired_access_token_is_401(
        self, viewer: httpx.AsyncClient, settings: Settings
    ) -> None:
        ttl = settings.access_token_ttl_seconds
        now = datetime.now(UTC)
        with time_machine.travel(now + timedelta(seconds=ttl - 5), tick=False):
            assert (await viewer.get("/products")).status_code == 200
        with time_machine.travel(now + timedelta(seconds=ttl + 5), tick=False):
            assert_401(await viewer.get("/products"))


class TestTokensOutOfPlace:
    async def test_refresh_token_used_as_access_token(self, client: httpx.AsyncClient) -> None:
        pair = await login(client, "viewer@example.com")
        headers = {"Authorization": f"Bearer {pair['refresh_token']}"}
        assert_401(await client.get("/products", headers=headers))

    async def test_access_token_used_at_refresh(self, client: httpx.AsyncClient) -> None:
        pair = await login(client, "viewer@example.com")
        response = await client.post("/auth/refresh", json={"refresh_token": pair["access_token"]})
        assert_401(response)

    async def test_spent_refresh_token(self, client: httpx.AsyncClient) -> None:
        pair = await login(client, "viewer@example.com")
        first = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert first.status_code == 200
        again = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert_401(again)


class TestTokensOfRemovedUsers:
    async def test_deleted_user(
        self, admin: httpx.AsyncClient, viewer: httpx.AsyncClient, users: Users
    ) -> None:
        assert (await viewer.get("/products")).status_code == 200
        assert (await admin.delete(f"/users/{users.viewer}")).status_code == 204
        assert_401(await viewer.get("/products"))

    async def test_deactivated_user_is_refused_at_once(
        self, admin: httpx.AsyncClient, viewer: httpx.AsyncClient, users: Users
    ) -> None:
        # Cached as active first: the deactivation must evict it, not wait for the TTL.
        assert (await viewer.get("/products")).status_code == 200
        patched = await admin.patch(f"/users/{users.viewer}", json={"is_active": False})
        assert patched.status_code == 200
        assert_401(await viewer.get("/products"))
        assert_401(await viewer.get("/users/me"))


# --- Roles -----------------------------------------------------------------------------------

Call = Callable[[httpx.AsyncClient, dict[str, int]], Awaitable[httpx.Response]]

ENDPOINTS: dict[str, tuple[str, Call, int]] = {
    # name: (minimum role, the call, status when allowed)
    "GET /products": ("viewer", lambda c, ids: c.get("/products"), 200),
    "GET /products/{id}": ("viewer", lambda c, ids: c.get(f"/products/{ids['product']}"), 200),
    "POST /products": ("editor", lambda c, ids: c.post("/products", json=product_data()), 201),
    "PATCH /products/{id}": (
        "editor",
        lambda c, ids: c.patch(f"/products/{ids['product']}", json={"name": "renamed"}),
        200,
    ),
    "DELETE /products/{id}": (
        "editor",
        lambda c, ids: c.delete(f"/products/{ids['product']}"),
        204,
    ),
    "GET /categories": ("viewer", lambda c, ids: c.get("/categories"), 200),
    "GET /categories/{id}": (
        "viewer",
        lambda c, ids: c.get(f"/categories/{ids['category']}"),
        200,
    ),
    "POST /categories": ("editor", lambda c, ids: c.post("/categories", json=category_data()), 201),
    "PATCH /categories/{id}": (
        "editor",
        lambda c, ids: c.patch(f"/categories/{ids['category']}", json={"name": "renamed"}),
        200,
    ),
    "DELETE /categories/{id}": (
        "editor",
        lambda c, ids: c.delete(f"/categories/{ids['category']}"),
        204,
    ),
    "GET /users": ("admin", lambda c, ids: c.get("/users"), 200),
    "POST /users": (
        "admin",
        lambda c, ids: c.post(
            "/users", json={"email": "m@example.com", "password": "a long enough password"}
        ),
        201,
    ),
    "GET /users/{id}": ("admin", lambda c, ids: c.get(f"/users/{ids['user']}"), 200),
    "PATCH /users/{id}": (
        "admin",
        lambda c, ids: c.patch(f"/users/{ids['user']}", json={"role": "editor"}),
        200,
    ),
    "DELETE /users/{id}": ("admin", lambda c, ids: c.delete(f"/users/{ids['user']}"), 204),
    "GET /users/me": ("viewer", lambda c, ids: c.get("/users/me"), 200),
}
RANK = {"viewer": 0, "editor": 1, "admin": 2}


@pytest.fixture
async def resources(
    app: FastAPI, settings: Settings, users: Users, password_hash: str
) -> dict[str, int]:
    transport = httpx.ASGITransport(app=app)
    headers = bearer(settings, users.admin, "admin")
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers
    ) as admin:
        category = (await admin.post("/categories", json=category_data())).json()
        product = (await admin.post("/products", json=product_data())).json()
    async with app.state.engine.begin() as connection:
        user_id = await connection.scalar(
            text(
                "INSERT INTO users (email, password_hash) "
                "VALUES ('target@example.com', :h) RETURNING id"
            ),
            {"h": password_hash},
        )
    return {"category": category["id"], "product": product["id"], "user": user_id}


class TestRoleMatrix:
    @pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
    @pytest.mark.parametrize("endpoint", list(ENDPOINTS))
    async def test_access(
        self,
        app: FastAPI,
        settings: Settings,
        users: Users,
        resources: dict[str, int],
        role: str,
        endpoint: str,
    ) -> None:
        minimum, call, allowed_status = ENDPOINTS[endpoint]
        user_id = {"viewer": users.viewer, "editor": users.editor, "admin": users.admin}[role]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=bearer(settings, user_id, role)
        ) as client:
            response = await call(client, resources)
        if RANK[role] >= RANK[minimum]:
            assert response.status_code == allowed_status, response.text
        else:
            assert response.status_code == 403, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["status"] == 403

    @pytest.mark.parametrize("endpoint", list(ENDPOINTS))
    async def test_anonymous_is_401(
        self, client: httpx.AsyncClient, resources: dict[str, int], endpoint: str
    ) -> None:
        _, call, _ = ENDPOINTS[endpoint]
        assert_401(await call(client, resources))
