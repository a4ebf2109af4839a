from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import EmailTaken, SelfLockout, UserNotFound
from app.main import create_app
from app.models import RefreshToken, User
from app.schemas.user import UserCreate, UserUpdate
from app.services.pagination import CursorCodec
from app.services.users import UserService, ensure_first_admin
from tests.conftest import Users, make_settings

pytestmark = pytest.mark.usefixtures("users")


@pytest.fixture
async def session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    async with app.state.sessionmaker() as session:
        yield session
        await session.rollback()


def new_user(**overrides: Any) -> UserCreate:
    data = {"email": "svc@example.com", "password": "a long enough password", **overrides}
    return UserCreate.model_validate(data)


async def add_refresh_token(session: AsyncSession, user_id: int) -> None:
    session.add(
        RefreshToken(
            token_hash=uuid.uuid4().hex,
            family_id=uuid.uuid4(),
            user_id=user_id,
            expires_at=datetime.now(UTC) + timedelta(days=1),
        )
    )
    await session.flush()


async def revoked(session: AsyncSession, user_id: int) -> list[bool]:
    rows = await session.scalars(
        select(RefreshToken.revoked_at).where(RefreshToken.user_id == user_id)
    )
    return [value is not None for value in rows]


class TestCreate:
    async def test_stores_an_argon2_hash_only(self, session: AsyncSession) -> None:
        user = await UserService(session).create(new_user())
        assert user.password_hash.startswith("$argon2id$")
        assert "a long enough password" not in user.password_hash
        assert user.role == "viewer"

    async def test_email_is_unique_case_insensitively(self, session: AsyncSession) -> None:
        with pytest.raises(EmailTaken):
            await UserService(session).create(new_user(email="ADMIN@example.com"))

    def test_password_policy(self) -> None:
        for password in ("", "seven77", "x" * 1025):
            with pytest.raises(ValidationError):
                new_user(password=password)
        assert new_user(password="eight888").password.get_secret_value() == "eight888"


class TestUpdate:
    @pytest.mark.parametrize(
        ("changes", "revokes"),
        [
            ({"role": "editor"}, True),
            ({"is_active": False}, True),
            ({"password": "another long password"}, True),
            ({"email": "changed@example.com"}, False),
            ({"is_active": True}, False),
            ({"role": "viewer"}, False),
        ],
    )
    async def test_which_changes_revoke_refresh_tokens(
        self, session: AsyncSession, users: Users, changes: dict[str, Any], revokes: bool
    ) -> None:
        await add_refresh_token(session, users.viewer)
        await add_refresh_token(session, users.viewer)
        await add_refresh_token(session, users.editor)
        await UserService(session).update(
            users.viewer, UserUpdate.model_validate(changes), actor_id=users.admin
        )
        assert await revoked(session, users.viewer) == [revokes, revokes]
        assert await revoked(session, users.editor) == [False]

    @pytest.mark.parametrize("changes", [{"role": "editor"}, {"is_active": False}])
    async def test_self_lockout(
        self, session: AsyncSession, users: Users, changes: dict[str, Any]
    ) -> None:
        with pytest.raises(SelfLockout):
            await UserService(session).update(
                users.admin, UserUpdate.model_validate(changes), actor_id=users.admin
            )

    async def test_unknown_user(self, session: AsyncSession, users: Users) -> None:
        with pytest.raises(UserNotFound):
            await UserService(session).update(
                999, UserUpdate.model_validate({"role": "editor"}), actor_id=users.admin
            )


class TestDeleteAndList:
    async def test_delete_self_is_refused(self, session: AsyncSession, users: Users) -> None:
        with pytest.raises(SelfLockout):
            await UserService(session).delete(users.admin, actor_id=users.admin)

    async def test_delete_removes_the_row(self, session: AsyncSession, users: Users) -> None:
        await UserService(session).delete(users.viewer, actor_id=users.admin)
        assert await session.get(User, users.viewer) is None

    async def test_keyset_pages(self, session: AsyncSession) -> None:
        codec = CursorCodec("k")
        service = UserService(session)
        first, cursor = await service.list(codec, limit=2, cursor=None)
        assert [u.id for u in first] == [1, 2]
        assert cursor is not None
        second, last = await service.list(codec, limit=2, cursor=cursor)
        assert [u.id for u in second] == [3]
        assert last is None


class TestFirstAdmin:
    def admin_settings(self, settings: Settings, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "first_admin_email": "Boss@Example.com",
            "first_admin_password": "first admin password",
            **overrides,
        }
        return make_settings(str(settings.database_url), settings.redis_url, **values)

    async def test_created_once(self, app: FastAPI, settings: Settings) -> None:
        configured = self.admin_settings(settings)
        assert await ensure_first_admin(app.state.sessionmaker, configured) is True
        assert await ensure_first_admin(app.state.sessionmaker, configured) is False
        async with app.state.engine.connect() as connection:
            rows = (
                await connection.execute(
                    text("SELECT role FROM users WHERE lower(email) = 'boss@example.com'")
                )
            ).all()
        assert [row.role for row in rows] == ["admin"]

    async def test_nothing_without_settings(self, app: FastAPI, settings: Settings) -> None:
        assert await ensure_first_admin(app.state.sessionmaker, settings) is False

    async def test_an_existing_account_is_left_alone(
        self, app: FastAPI, settings: Settings
    ) -> None:
        configured = self.admin_settings(settings, first_admin_email="VIEWER@example.com")
        assert await ensure_first_admin(app.state.sessionmaker, configured) is False
        async with app.state.engine.connect() as connection:
            role = await connection.scalar(text("SELECT role FROM users WHERE id = 3"))
        assert role == "viewer"

    async def test_a_weak_password_is_refused(self, app: FastAPI, settings: Settings) -> None:
        with pytest.raises(ValidationError):
            await ensure_first_admin(
                app.state.sessionmaker, self.admin_settings(settings, first_admin_password="short")
            )

    async def test_startup_creates_the_admin_idempotently(self, settings: Settings) -> None:
        configured = self.admin_settings(settings)
        for _ in range(2):
            application = create_app(configured)
            async with application.router.lifespan_context(application):
                transport = httpx.ASGITransport(app=application)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    response = await client.post(
                        "/auth/token",
                        data={"username": "boss@example.com", "password": "first admin password"},
                    )
                    assert response.status_code == 200
                async with application.state.engine.connect() as connection:
                    count = await connection.scalar(text("SELECT count(*) FROM users"))
                assert count == 4
