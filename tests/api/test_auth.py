from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
import time_machine
from fastapi import FastAPI
from limits.aio.storage import MemoryStorage
from passlib.context import CryptContext
from prometheus_client import REGISTRY
from sqlalchemy import text

from app.core.config import Settings
from app.core.errors import LoginThrottled
from app.core.security import hash_password, verify_password
from app.services import auth as auth_service
from app.services.login_throttle import LoginThrottle
from app.services.password_hasher import PasswordHasher
from tests.conftest import PASSWORD, Users, make_settings

pytestmark = pytest.mark.usefixtures("users", "isolated_throttle")


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/token", data={"username": email, "password": password})


async def tokens(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> Any:
    response = await login(client, email, password)
    assert response.status_code == 200, response.text
    return response.json()


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


def auth(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


async def scalar(app: FastAPI, sql: str, **params: object) -> Any:
    async with app.state.engine.connect() as connection:
        return (await connection.execute(text(sql), params)).scalar()


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"


class TestLogin:
    async def test_returns_a_working_token_pair(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        response = await login(client, "editor@example.com")
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == settings.access_token_ttl_seconds
        assert response.headers["cache-control"] == "no-store"
        me = await client.get("/users/me", headers=auth(body["access_token"]))
        assert me.status_code == 200
        assert me.json()["email"] == "editor@example.com"
        assert me.json()["role"] == "editor"

    async def test_email_is_case_insensitive(self, client: httpx.AsyncClient) -> None:
        response = await login(client, "  Viewer@EXAMPLE.com ")
        assert response.status_code == 200

    async def test_unknown_email_and_wrong_password_get_the_same_401(
        self, client: httpx.AsyncClient
    ) -> None:
        unknown = await login(client, "nobody@example.com")
        wrong = await login(client, "viewer@example.com", "wrong password!")
        for response in (unknown, wrong):
            assert_401(response)
        strip = {"request_id"}
        assert {k: v for k, v in unknown.json().items() if k not in strip} == {
            k: v for k, v in wrong.json().items() if k not in strip
        }
        assert unknown.json()["detail"] == "Incorrect email or password"

    async def test_unknown_email_still_verifies_a_hash(
        self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[str | None] = []

        def spy(password: str, password_hash: str | None) -> tuple[bool, bool]:
            calls.append(password_hash)
            return verify_password(password, password_hash)

        monkeypatch.setattr(auth_service, "verify_password", spy)
        assert_401(await login(client, "nobody@example.com"))
        assert_401(await login(client, "viewer@example.com", "wrong password!"))
        # The same argon2 work either way: a dummy hash when the account does not exist.
        assert calls[0] is None
        assert calls[1] is not None
        assert calls[1].startswith("$argon2id$")

    async def test_metrics_give_one_reason_for_unknown_wrong_and_inactive(
        self, client: httpx.AsyncClient, admin: httpx.AsyncClient, users: Users
    ) -> None:
        # /metrics needs no token: a reason per case would tell which emails exist.
        def count(reason: str) -> float | None:
            return REGISTRY.get_sample_value("catalog_login_failures_total", {"reason": reason})

        before = count("invalid_credentials") or 0.0
        assert_401(await login(client, "nobody@example.com"))
        assert count("invalid_credentials") == before + 1
        assert_401(await login(client, "viewer@example.com", "wrong password!"))
        assert count("invalid_credentials") == before + 2
        patched = await admin.patch(f"/users/{users.viewer}", json={"is_active": False})
        assert patched.status_code == 200
        assert_401(await login(client, "viewer@example.com"))  # the right password
        assert count("invalid_credentials") == before + 3
        for old in ("unknown_email", "wrong_password", "inactive"):
            assert count(old) is None

    async def test_deactivated_user_gets_the_same_401(
        self, client: httpx.AsyncClient, admin: httpx.AsyncClient, users: Users
    ) -> None:
        unknown = await login(client, "nobody@example.com")
        wrong = await login(client, "viewer@example.com", "wrong password!")
        patched = await admin.patch(f"/users/{users.viewer}", json={"is_active": False})
        assert patched.status_code == 200
        inactive = await login(client, "viewer@example.com")
        for response in (unknown, wrong, inactive):
            assert_401(response)
        bodies = [
            {k: v for k, v in r.json().items() if k != "request_id"}
            for r in (unknown, wrong, inactive)
        ]
        assert bodies[0] == bodies[1] == bodies[2]

    @pytest.mark.parametrize("username", ["nul\x00@example.com", "x" * 400 + "@example.com"])
    async def test_impossible_emails_are_a_plain_401(
        self, client: httpx.AsyncClient, username: str
    ) -> None:
        assert_401(await login(client, username))

    async def test_form_fields_are_required(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/auth/token", json={"username": "admin@example.com", "password": PASSWORD}
        )
        assert response.status_code == 422

    async def test_bcrypt_hash_is_replaced_by_argon2_on_login(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        legacy = CryptContext(schemes=["bcrypt"]).hash("legacy password")
        async with app.state.engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO users (email, password_hash) VALUES ('old@example.com', :h)"),
                {"h": legacy},
            )
        assert (await login(client, "old@example.com", "legacy password")).status_code == 200
        stored = await scalar(
            app, "SELECT password_hash FROM users WHERE email = 'old@example.com'"
        )
        assert stored.startswith("$argon2id$")
        assert (await login(client, "old@example.com", "legacy password")).status_code == 200

    async def test_overlong_password_is_401_not_500(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        legacy = CryptContext(schemes=["bcrypt"]).hash("legacy password")
        async with app.state.engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO users (email, password_hash) VALUES ('old@example.com', :h)"),
                {"h": legacy},
            )
        # bcrypt raises on more than 72 bytes; the argon2 path caps at 1024 characters.
        assert_401(await login(client, "old@example.com", "x" * 100))
        assert_401(await login(client, "admin@example.com", "x" * 5000))

    async def test_openapi_declares_the_password_flow_for_swagger(
        self, client: httpx.AsyncClient
    ) -> None:
        schema = (await client.get("/openapi.json")).json()
        flows = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
        assert flows["password"]["tokenUrl"] == "/auth/token"
        form = schema["paths"]["/auth/token"]["post"]["requestBody"]["content"]
        assert "application/x-www-form-urlencoded" in form


class TestLoginThrottle:
    @pytest.fixture
    async def small_throttle(
        self, app: FastAPI, isolated_throttle: LoginThrottle
    ) -> AsyncIterator[LoginThrottle]:
        storage = isolated_throttle.storage
        throttle = LoginThrottle(
            storage, per_account=3, per_client=5, per_account_total=10, window_seconds=60
        )
        app.state.login_throttle = throttle
        try:
            yield throttle
        finally:
            app.state.login_throttle = isolated_throttle

    async def test_account_is_throttled_after_its_failures_even_with_the_right_password(
        self, client: httpx.AsyncClient, small_throttle: LoginThrottle
    ) -> None:
        for _ in range(3):
            assert_401(await login(client, "viewer@example.com", "wrong password!"))
        response = await login(client, "viewer@example.com")
        assert response.status_code == 429
        assert response.headers["content-type"] == "application/problem+json"
        assert 1 <= int(response.headers["retry-after"]) <= 60
        # Another account from the same client still gets in.
        assert (await login(client, "editor@example.com")).status_code == 200

    async def test_client_is_throttled_across_accounts(
        self, client: httpx.AsyncClient, small_throttle: LoginThrottle
    ) -> None:
        for number in range(5):
            assert_401(await login(client, f"guess{number}@example.com", "wrong password!"))
        response = await login(client, "admin@example.com")
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1

    async def test_a_success_clears_the_account_failures(
        self, client: httpx.AsyncClient, small_throttle: LoginThrottle
    ) -> None:
        for _ in range(2):
            assert_401(await login(client, "viewer@example.com", "wrong password!"))
        assert (await login(client, "viewer@example.com")).status_code == 200
        for _ in range(2):
            assert_401(await login(client, "viewer@example.com", "wrong password!"))
        assert (await login(client, "viewer@example.com")).status_code == 200

    async def test_throttled_attempts_do_not_verify_the_password(
        self, client: httpx.AsyncClient, small_throttle: LoginThrottle, app: FastAPI
    ) -> None:
        legacy = CryptContext(schemes=["bcrypt"]).hash("legacy password")
        async with app.state.engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO users (email, password_hash) VALUES ('old@example.com', :h)"),
                {"h": legacy},
            )
        for _ in range(3):
            assert_401(await login(client, "old@example.com", "wrong password!"))
        assert (await login(client, "old@example.com", "legacy password")).status_code == 429
        # Verifying would have rehashed the bcrypt hash; it is untouched.
        stored = await scalar(
            app, "SELECT password_hash FROM users WHERE email = 'old@example.com'"
        )
        assert stored == legacy

    async def test_successes_do_not_count(
        self, client: httpx.AsyncClient, small_throttle: LoginThrottle
    ) -> None:
        # Every attempt is counted before its check; a success gives its count back, so an
        # address where many people log in (an office) is not throttled for it.
        for _ in range(7):
            assert (await login(client, "viewer@example.com")).status_code == 200
        for number in range(5):
            assert_401(await login(client, f"guess{number}@example.com", "wrong password!"))
        assert (await login(client, "viewer@example.com")).status_code == 429

    async def test_strangers_cannot_lock_the_owner_out_until_the_account_ceiling(
        self, app: FastAPI, small_throttle: LoginThrottle
    ) -> None:
        # Pair limit 3, account ceiling 10 (small_throttle).
        def from_address(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://test")

        async with (
            from_address("10.0.0.99") as owner,
            from_address("10.0.0.1") as first,
            from_address("10.0.0.2") as second,
            from_address("10.0.0.3") as third,
            from_address("10.0.0.4") as fourth,
            from_address("10.0.0.5") as fifth,
        ):
            for stranger in (first, second, third):
                for _ in range(3):
                    assert_401(await login(stranger, "viewer@example.com", "wrong password!"))
            # Each stranger is done with this account; the owner is not (9 of 10).
            assert (await login(first, "viewer@example.com")).status_code == 429
            assert (await login(owner, "viewer@example.com")).status_code == 200
            assert_401(await login(fourth, "viewer@example.com", "wrong password!"))  # 10 of 10
            # Past the ceiling, nobody gets in this window, the owner neither: the ceiling
            # holds; other accounts from the same addresses are untouched.
            for caller in (fifth, owner):
                refused = await login(caller, "viewer@example.com")
                assert refused.status_code == 429
                assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert (await login(owner, "editor@example.com")).status_code == 200
            assert (await login(fifth, "editor@example.com")).status_code == 200

    async def test_a_busy_login_is_503_at_once_and_counts_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, small_throttle: LoginThrottle
    ) -> None:
        hasher = PasswordHasher(1)
        original, app.state.password_hasher = app.state.password_hasher, hasher
        busy_before = REGISTRY.get_sample_value("catalog_login_failures_total", {"reason": "busy"})
        try:
            async with hasher.slot():  # the only slot, held as a running hash would
                for _ in range(6):
                    started = time.monotonic()
                    busy = await login(client, "viewer@example.com", "wrong password!")
                    assert time.monotonic() - started < 1
                    assert busy.status_code == 503
                    assert busy.headers["retry-after"] == "1"
                    assert busy.headers["content-type"] == "application/problem+json"
            after = REGISTRY.get_sample_value("catalog_login_failures_total", {"reason": "busy"})
            assert after == (busy_before or 0) + 6
            # Six refused as busy, more than the account's 3 and the address's 5: none counted.
            for _ in range(3):
                assert_401(await login(client, "viewer@example.com", "wrong password!"))
            assert (await login(client, "viewer@example.com")).status_code == 429
        finally:
            app.state.password_hasher = original
            hasher.close()

    async def test_no_database_connection_is_held_while_hashing(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        checked_out: dict[str, int] = {}

        def verify(password: str, password_hash: str | None) -> tuple[bool, bool]:
            checked_out[f"verify {password}"] = app.state.engine.pool.checkedout()
            return verify_password(password, password_hash)

        def rehash(password: str) -> str:
            checked_out["rehash"] = app.state.engine.pool.checkedout()
            return hash_password(password)

        monkeypatch.setattr(auth_service, "verify_password", verify)
        monkeypatch.setattr(auth_service, "hash_password", rehash)
        legacy = CryptContext(schemes=["bcrypt"]).hash("legacy password")
        async with app.state.engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO users (email, password_hash) VALUES ('old@example.com', :h)"),
                {"h": legacy},
            )
        assert_401(await login(client, "nobody@example.com", "unknown"))
        assert_401(await login(client, "old@example.com", "wrong"))
        assert (await login(client, "old@example.com", "legacy password")).status_code == 200
        assert checked_out == {
            "verify unknown": 0,
            "verify wrong": 0,
            "verify legacy password": 0,
            "rehash": 0,
        }
        stored = await scalar(
            app, "SELECT password_hash FROM users WHERE email = 'old@example.com'"
        )
        assert stored.startswith("$argon2id$")

    async def test_workers_share_the_counters_through_redis(self, settings: Settings) -> None:
        assert settings.redis_url is not None
        prefix = f"test-login-{uuid.uuid4().hex}"
        tight = make_settings(
            str(settings.database_url),
            settings.redis_url,
            login_max_failures=2,
            login_max_failures_per_account=2,
        )
        first_client = redis.from_url(settings.redis_url)
        second_client = redis.from_url(settings.redis_url)
        first = LoginThrottle.from_settings(tight, first_client, key_prefix=prefix)
        second = LoginThrottle.from_settings(tight, second_client, key_prefix=prefix)
        try:
            await first.begin(email="a@example.com", client="10.0.0.1")  # a failure: kept
            await second.begin(email="A@example.com", client="10.0.0.2")
            with pytest.raises(LoginThrottled) as raised:
                await first.begin(email="a@example.com", client="10.0.0.3")
            assert 1 <= int(raised.value.headers["Retry-After"]) <= 300
            keys = await first_client.keys(f"{prefix}:*")
            assert keys
            assert not any(b"example.com" in key for key in keys)  # emails are hashed
        finally:
            await first.reset()
            await first_client.aclose()
            await second_client.aclose()

    async def test_memory_window_ends_with_time(self) -> None:
        throttle = LoginThrottle(MemoryStorage(), per_account=1, per_client=10, window_seconds=60)
        with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
            await throttle.begin(email="a@example.com", client="c")
            with pytest.raises(LoginThrottled) as raised:
                await throttle.begin(email="a@example.com", client="c")
            assert raised.value.headers["Retry-After"] == "60"
            traveller.shift(61)
            await throttle.begin(email="a@example.com", client="c")

    @pytest.mark.parametrize("store", ["memory", "redis"])
    async def test_given_back_hits_leave_the_counters_as_they_were(
        self, store: str, isolated_throttle: LoginThrottle
    ) -> None:
        storage = MemoryStorage() if store == "memory" else isolated_throttle.storage
        throttle = LoginThrottle(storage, per_account=2, per_client=3, window_seconds=60)
        for _ in range(5):  # refused or not, a given-back attempt leaves nothing behind
            attempt = await throttle.begin(email="a@example.com", client="c")
            await throttle.give_back(attempt)
        kept = await throttle.begin(email="a@example.com", client="c")
        await throttle.begin(email="a@example.com", client="c")
        with pytest.raises(LoginThrottled):
            await throttle.begin(email="a@example.com", client="c")  # the pair's 2 stand
        await throttle.succeeded(kept)  # gives its hits back and clears the pair
        await throttle.begin(email="a@example.com", client="c")
        await throttle.begin(email="a@example.com", client="c")  # the address's 3rd failure
        with pytest.raises(LoginThrottled):
            await throttle.begin(email="b@example.com", client="c")

    async def test_unreachable_redis_falls_back_to_counting_in_process(
        self, settings: Settings
    ) -> None:
        down = make_settings(
            str(settings.database_url), "redis://127.0.0.1:1/0", login_max_failures=1
        )
        client = redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
        try:
            throttle = LoginThrottle.from_settings(down, client)
            await throttle.begin(email="a@example.com", client="c")
            with pytest.raises(LoginThrottled):
                await throttle.begin(email="a@example.com", client="c")
        finally:
            await client.aclose()


class TestRefresh:
    async def test_rotates_the_pair_and_spends_the_old_token(
        self, client: httpx.AsyncClient
    ) -> None:
        first = await tokens(client, "viewer@example.com")
        response = await refresh(client, first["refresh_token"])
        assert response.status_code == 200
        second = response.json()
        assert response.headers["cache-control"] == "no-store"
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        me = await client.get("/users/me", headers=auth(second["access_token"]))
        assert me.json()["email"] == "viewer@example.com"
        assert (await refresh(client, second["refresh_token"])).status_code == 200

    async def test_reusing_a_spent_token_revokes_the_whole_family(
        self, client: httpx.AsyncClient
    ) -> None:
        stolen = await tokens(client, "viewer@example.com")
        other_session = await tokens(client, "viewer@example.com")
        latest = (await refresh(client, stolen["refresh_token"])).json()
        reuse = await refresh(client, stolen["refresh_token"])
        assert_401(reuse)
        assert_401(await refresh(client, latest["refresh_token"]))
        # Another login is another family: untouched.
        assert (await refresh(client, other_session["refresh_token"])).status_code == 200

    async def test_concurrent_refreshes_of_one_token_let_at_most_one_through(
        self, client: httpx.AsyncClient
    ) -> None:
        pair = await tokens(client, "viewer@example.com")
        responses = await asyncio.gather(
            *(refresh(client, pair["refresh_token"]) for _ in range(5))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 401, 401, 401, 401]

    async def test_expired_refresh_token_is_401(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        pair = await tokens(client, "viewer@example.com")
        later = datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_seconds + 5)
        with time_machine.travel(later, tick=True):
            assert_401(await refresh(client, pair["refresh_token"]))

    async def test_unknown_token_is_401(self, client: httpx.AsyncClient) -> None:
        assert_401(await refresh(client, "made-up-token"))

    async def test_refresh_takes_json(self, client: httpx.AsyncClient) -> None:
        form = await client.post("/auth/refresh", data={"refresh_token": "x"})
        assert form.status_code == 415
        empty = await client.post("/auth/refresh", json={})
        assert empty.status_code == 422

    async def test_a_new_role_revokes_refresh_tokens_at_once(
        self, client: httpx.AsyncClient, admin: httpx.AsyncClient, users: Users
    ) -> None:
        pair = await tokens(client, "editor@example.com")
        changed = await admin.patch(f"/users/{users.editor}", json={"role": "viewer"})
        assert changed.status_code == 200
        assert_401(await refresh(client, pair["refresh_token"]))
        # The old access token keeps working, with the new role only.
        products = await client.post(
            "/products",
            json={"sku": "S-1", "name": "n", "price": "1", "currency": "EUR"},
            headers=auth(pair["access_token"]),
        )
        assert products.status_code == 403

    async def test_the_token_is_stored_only_as_its_hash(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        pair = await tokens(client, "viewer@example.com")
        raw = pair["refresh_token"]
        stored = await scalar(app, "SELECT token_hash FROM refresh_tokens")
        assert stored == hashlib.sha256(raw.encode()).hexdigest()
        dump = await scalar(app, "SELECT string_agg(t::text, '|') FROM refresh_tokens t")
        assert raw not in dump


class TestLogout:
    async def test_revokes_the_family(self, client: httpx.AsyncClient) -> None:
        pair = await tokens(client, "viewer@example.com")
        latest = (await refresh(client, pair["refresh_token"])).json()
        response = await client.post(
            "/auth/logout",
            json={"refresh_token": latest["refresh_token"]},
            headers=auth(latest["access_token"]),
        )
        assert response.status_code == 204
        assert response.content == b""
        assert_401(await refresh(client, latest["refresh_token"]))

    async def test_needs_a_bearer_token(self, client: httpx.AsyncClient) -> None:
        pair = await tokens(client, "viewer@example.com")
        response = await client.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert_401(response)
        assert (await refresh(client, pair["refresh_token"])).status_code == 200

    async def test_someone_elses_token_is_204_and_left_alone(
        self, client: httpx.AsyncClient, editor: httpx.AsyncClient
    ) -> None:
        victim = await tokens(client, "viewer@example.com")
        response = await editor.post(
            "/auth/logout", json={"refresh_token": victim["refresh_token"]}
        )
        assert response.status_code == 204
        unknown = await editor.post("/auth/logout", json={"refresh_token": "no-such-token"})
        assert unknown.status_code == 204
        assert (await refresh(client, victim["refresh_token"])).status_code == 200


class TestMe:
    @pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
    async def test_every_role_reads_itself(self, client: httpx.AsyncClient, role: str) -> None:
        pair = await tokens(client, f"{role}@example.com")
        response = await client.get("/users/me", headers=auth(pair["access_token"]))
        assert response.status_code == 200
        body = response.json()
        assert body["role"] == role
        assert set(body) == {"id", "email", "role", "is_active", "created_at", "updated_at"}

    async def test_needs_a_token(self, client: httpx.AsyncClient) -> None:
        assert_401(await client.get("/users/me"))
