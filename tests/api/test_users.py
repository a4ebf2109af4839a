from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.config import Settings
from tests.conftest import PASSWORD, Users

pytestmark = pytest.mark.usefixtures("users", "isolated_throttle")

CATALOG = Path(sys.executable).parent / "catalog"


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/token", data={"username": email, "password": password})


async def create_user(admin: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    body = {"email": "new@example.com", "password": "a long enough password", "role": "viewer"}
    response = await admin.post("/users", json={**body, **overrides})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()  # type: ignore[no-any-return]


class TestCreateUser:
    async def test_created_with_location_and_no_password(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        response = await admin.post(
            "/users",
            json={
                "email": "New@Example.com",
                "password": "long enough pass",
                "role": "editor",
            },
        )
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/users/{body['id']}"
        assert set(body) == {"id", "email", "role", "is_active", "created_at", "updated_at"}
        assert body["role"] == "editor"
        assert body["is_active"] is True
        assert "long enough pass" not in response.text
        assert (await login(client, "new@example.com", "long enough pass")).status_code == 200

    async def test_role_defaults_to_viewer(self, admin: httpx.AsyncClient) -> None:
        response = await admin.post(
            "/users", json={"email": "v@example.com", "password": "a long enough password"}
        )
        assert response.json()["role"] == "viewer"

    @pytest.mark.parametrize("email", ["viewer@example.com", "VIEWER@example.COM"])
    async def test_email_taken_case_insensitively_is_409(
        self, admin: httpx.AsyncClient, email: str
    ) -> None:
        response = await admin.post(
            "/users", json={"email": email, "password": "a long enough password"}
        )
        problem = assert_problem(response, 409)
        assert problem["type"] == "/problems/email-taken"

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("password", "s3cr3t!"),
            ("password", "x" * 1025),
            ("email", "not-an-email"),
            ("email", "nul\x00@example.com"),
            ("role", "root"),
            ("is_admin", True),
        ],
    )
    async def test_invalid_body_is_422_and_never_echoes_the_input(
        self, admin: httpx.AsyncClient, field: str, value: object
    ) -> None:
        body = {"email": "x@example.com", "password": "a long enough password", field: value}
        problem = assert_problem(await admin.post("/users", json=body), 422)
        assert any(field in error["loc"] for error in problem["errors"])
        if field == "password":
            assert str(value) not in str(problem)

    async def test_long_passwords_are_not_truncated(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        password = "é" * 80 + "tail"  # 164 bytes: far past bcrypt's 72
        await create_user(admin, email="long@example.com", password=password)
        assert (await login(client, "long@example.com", password)).status_code == 200
        assert (await login(client, "long@example.com", "é" * 80)).status_code == 401

    async def test_the_longest_password_is_accepted(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        await create_user(admin, email="max@example.com", password="p" * 1024)
        assert (await login(client, "max@example.com", "p" * 1024)).status_code == 200

    async def test_form_body_is_415(self, admin: httpx.AsyncClient) -> None:
        response = await admin.post("/users", data={"email": "x@example.com"})
        assert_problem(response, 415)


class TestListAndGetUsers:
    async def test_pages_by_id_with_a_cursor(self, admin: httpx.AsyncClient) -> None:
        for number in range(4):
            await create_user(admin, email=f"user{number}@example.com")
        seen: list[int] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = (await admin.get("/users", params=params)).json()
            assert set(page) == {"items", "next_cursor"}
            assert len(page["items"]) <= 3
            seen += [user["id"] for user in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(range(1, 8))

    @pytest.mark.parametrize("params", [{"cursor": "garbage"}, {"limit": 0}, {"limit": 101}])
    async def test_bad_paging_is_422(
        self, admin: httpx.AsyncClient, params: dict[str, Any]
    ) -> None:
        assert_problem(await admin.get("/users", params=params), 422)

    async def test_a_category_cursor_is_not_a_user_cursor(
        self, admin: httpx.AsyncClient, editor: httpx.AsyncClient
    ) -> None:
        for number in range(2):
            await editor.post("/categories", json={"slug": f"c{number}", "name": "c"})
        cursor = (await editor.get("/categories", params={"limit": 1})).json()["next_cursor"]
        assert_problem(await admin.get("/users", params={"cursor": cursor}), 422)

    async def test_get_one(self, admin: httpx.AsyncClient, users: Users) -> None:
        response = await admin.get(f"/users/{users.viewer}")
        assert response.status_code == 200
        assert response.json()["email"] == "viewer@example.com"

    @pytest.mark.parametrize("user_id", ["999", "0", str(2**63)])
    async def test_unknown_or_out_of_range_id(self, admin: httpx.AsyncClient, user_id: str) -> None:
        response = await admin.get(f"/users/{user_id}")
        assert response.status_code in {404, 422}
        assert response.headers["content-type"] == "application/problem+json"
        if user_id == "999":
            assert response.status_code == 404


class TestUpdateUser:
    async def test_change_email_and_password(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient, users: Users
    ) -> None:
        response = await admin.patch(
            f"/users/{users.viewer}",
            json={"email": "renamed@example.com", "password": "a brand new password"},
        )
        assert response.status_code == 200
        assert response.json()["email"] == "renamed@example.com"
        assert (await login(client, "viewer@example.com")).status_code == 401
        assert (await login(client, "renamed@example.com", PASSWORD)).status_code == 401
        ok = await login(client, "renamed@example.com", "a brand new password")
        assert ok.status_code == 200

    async def test_a_new_password_revokes_refresh_tokens(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient, users: Users
    ) -> None:
        pair = (await login(client, "viewer@example.com")).json()
        await admin.patch(f"/users/{users.viewer}", json={"password": "a brand new password"})
        refreshed = await client.post(
            "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert refreshed.status_code == 401

    async def test_email_change_keeps_refresh_tokens(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient, users: Users
    ) -> None:
        pair = (await login(client, "viewer@example.com")).json()
        await admin.patch(f"/users/{users.viewer}", json={"email": "renamed@example.com"})
        refreshed = await client.post(
            "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert refreshed.status_code == 200

    async def test_email_taken_is_409(self, admin: httpx.AsyncClient, users: Users) -> None:
        response = await admin.patch(f"/users/{users.viewer}", json={"email": "EDITOR@example.com"})
        assert assert_problem(response, 409)["type"] == "/problems/email-taken"

    async def test_promotion_applies_to_the_existing_access_token_at_once(
        self, admin: httpx.AsyncClient, viewer: httpx.AsyncClient, users: Users
    ) -> None:
        product = {"sku": "P-1", "name": "n", "price": "1", "currency": "EUR"}
        assert (await viewer.post("/products", json=product)).status_code == 403
        await admin.patch(f"/users/{users.viewer}", json={"role": "editor"})
        assert (await viewer.post("/products", json=product)).status_code == 201

    async def test_deactivation_stops_access_tokens_at_once_and_reactivation_restores_login(
        self,
        admin: httpx.AsyncClient,
        viewer: httpx.AsyncClient,
        client: httpx.AsyncClient,
        users: Users,
    ) -> None:
        assert (await viewer.get("/products")).status_code == 200
        off = await admin.patch(f"/users/{users.viewer}", json={"is_active": False})
        assert off.json()["is_active"] is False
        assert (await viewer.get("/products")).status_code == 401
        assert (await login(client, "viewer@example.com")).status_code == 401
        await admin.patch(f"/users/{users.viewer}", json={"is_active": True})
        assert (await login(client, "viewer@example.com")).status_code == 200
        assert (await viewer.get("/products")).status_code == 200

    @pytest.mark.parametrize("body", [{"email": None}, {"role": None}, {"password": "short"}, {}])
    async def test_nulls_and_bad_values_are_422_empty_is_a_no_op(
        self, admin: httpx.AsyncClient, users: Users, body: dict[str, Any]
    ) -> None:
        response = await admin.patch(f"/users/{users.viewer}", json=body)
        if body:
            assert_problem(response, 422)
        else:
            assert response.status_code == 200
            assert response.json()["role"] == "viewer"

    async def test_unknown_user_is_404(self, admin: httpx.AsyncClient) -> None:
        assert_problem(await admin.patch("/users/999", json={"role": "editor"}), 404)


class TestSelfLockout:
    @pytest.mark.parametrize("body", [{"role": "editor"}, {"role": "viewer"}, {"is_active": False}])
    async def test_admin_cannot_demote_or_deactivate_themselves(
        self, admin: httpx.AsyncClient, users: Users, body: dict[str, Any]
    ) -> None:
        problem = assert_problem(await admin.patch(f"/users/{users.admin}", json=body), 409)
        assert problem["type"] == "/problems/self-lockout"
        me = (await admin.get("/users/me")).json()
        assert me["role"] == "admin"
        assert me["is_active"] is True

    async def test_admin_cannot_delete_themselves(
        self, admin: httpx.AsyncClient, users: Users
    ) -> None:
        assert_problem(await admin.delete(f"/users/{users.admin}"), 409)
        assert (await admin.get("/users/me")).status_code == 200

    async def test_admin_may_change_their_own_password(
        self, admin: httpx.AsyncClient, users: Users
    ) -> None:
        response = await admin.patch(
            f"/users/{users.admin}", json={"password": "a brand new password", "role": "admin"}
        )
        assert response.status_code == 200

    async def test_admin_may_demote_another_admin(
        self, admin: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        other = await create_user(admin, email="second@example.com", role="admin")
        response = await admin.patch(f"/users/{other['id']}", json={"role": "viewer"})
        assert response.json()["role"] == "viewer"


class TestDeleteUser:
    async def test_deleted_user_is_gone_with_their_tokens(
        self,
        admin: httpx.AsyncClient,
        viewer: httpx.AsyncClient,
        client: httpx.AsyncClient,
        users: Users,
        app: FastAPI,
    ) -> None:
        pair = (await login(client, "viewer@example.com")).json()
        assert (await viewer.get("/products")).status_code == 200
        response = await admin.delete(f"/users/{users.viewer}")
        assert response.status_code == 204
        assert_problem(await admin.get(f"/users/{users.viewer}"), 404)
        assert_problem(await viewer.get("/products"), 401)
        refreshed = await client.post(
            "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert_problem(refreshed, 401)
        async with app.state.engine.connect() as connection:
            left = await connection.scalar(text("SELECT count(*) FROM refresh_tokens"))
        assert left == 0

    async def test_unknown_user_is_404(self, admin: httpx.AsyncClient) -> None:
        assert_problem(await admin.delete("/users/999"), 404)


class TestCreateUserCommand:
    """The real console script, as an operator runs it."""

    def run(self, settings: Settings, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "DATABASE_URL": str(settings.database_url),
            "ENVIRONMENT": "test",
            "SECRET_KEY": settings.secret_key.get_secret_value(),
        }
        env.pop("REDIS_URL", None)
        return subprocess.run(
            [str(CATALOG), "create-user", *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    async def test_creates_an_admin_who_can_log_in(
        self, settings: Settings, client: httpx.AsyncClient
    ) -> None:
        password = "cli password with spaces"
        result = self.run(
            settings, "x@example.com", "--role", "admin", "--password-stdin", stdin=password + "\n"
        )
        assert result.returncode == 0, result.stderr
        assert "created user" in result.stdout
        assert password not in result.stdout + result.stderr
        response = await login(client, "x@example.com", password)
        assert response.status_code == 200
        me = await client.get(
            "/users/me", headers={"Authorization": f"Bearer {response.json()['access_token']}"}
        )
        assert me.json()["role"] == "admin"

    async def test_taken_email_fails_cleanly(self, settings: Settings) -> None:
        result = self.run(
            settings,
            "Admin@Example.com",
            "--role",
            "viewer",
            "--password-stdin",
            stdin="another password\n",
        )
        assert result.returncode == 1
        assert "already" in result.stderr
        assert "Traceback" not in result.stderr

    async def test_weak_password_is_refused_without_echoing_it(self, settings: Settings) -> None:
        result = self.run(
            settings, "y@example.com", "--role", "viewer", "--password-stdin", stdin="s3cr\n"
        )
        assert result.returncode == 1
        assert "password" in result.stderr
        assert "s3cr" not in result.stdout + result.stderr

    async def test_role_is_checked(self, settings: Settings) -> None:
        result = self.run(
            settings, "y@example.com", "--role", "root", "--password-stdin", stdin="whatever1\n"
        )
        assert result.returncode == 2
        assert "root" in result.stderr

    async def test_prompt_asks_twice(self, settings: Settings, client: httpx.AsyncClient) -> None:
        result = self.run(
            settings, "z@example.com", "--role", "editor", stdin="prompted password\n" * 2
        )
        assert result.returncode == 0, result.stderr
        assert (await login(client, "z@example.com", "prompted password")).status_code == 200
