"""User management: CRUD for admins, case-insensitive unique emails, the first admin."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.errors import EmailTaken, SelfLockout, Unprocessable, UserNotFound
from app.core.logging import get_logger
from app.core.security import Role, hash_password
from app.models import User
from app.schemas.user import UserCreate, UserUpdate
from app.services.auth import revoke_user_tokens
from app.services.pagination import CursorCodec

UNIQUE_VIOLATION = "23505"
log = get_logger("app.users")


class UserService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int, *, for_update: bool = False) -> User:
        query = select(User).where(User.id == user_id)
        user = await self.session.scalar(query.with_for_update() if for_update else query)
        if user is None:
            raise UserNotFound(f"User {user_id} does not exist")
        return user

    async def list(
        self, codec: CursorCodec, *, limit: int, cursor: str | None
    ) -> tuple[list[User], str | None]:
        query = select(User).order_by(User.id).limit(limit + 1)
        if cursor is not None:
            (after_id,) = codec.decode(cursor, "users:id")
            if not isinstance(after_id, int):
                raise Unprocessable("The cursor is invalid", loc=["query", "cursor"])
            query = query.where(User.id > after_id)
        users = list(await self.session.scalars(query))
        if len(users) > limit:
            users = users[:limit]
            return users, codec.encode("users:id", [users[-1].id])
        return users, None

    async def create(self, data: UserCreate) -> User:
        password_hash = await asyncio.to_thread(hash_password, data.password.get_secret_value())
        user = User(email=data.email, password_hash=password_hash, role=data.role.value)
        self.session.add(user)
        await self._flush()
        log.info("user created", user_id=user.id, role=user.role)
        return user

    async def update(self, user_id: int, changes: UserUpdate, *, actor_id: int) -> User:
        """Apply changes; a new role, a deactivation or a new password revokes the user's
        refresh tokens at once.

        An admin demoting or deactivating their own account gets 409 (SelfLockout): the
        request is well formed but conflicts with who is making it.
        """
        values = changes.changes()
        if user_id == actor_id and (
            values.get("role", Role.admin) is not Role.admin or values.get("is_active") is False
        ):
            raise SelfLockout("You cannot demote or deactivate your own account")
        user = await self.get(user_id, for_update=True)
        revoke = False
        if "email" in values:
            user.email = values["email"]
        if "password" in values:
            user.password_hash = await asyncio.to_thread(
                hash_password, values["password"].get_secret_value()
            )
            revoke = True
        if "role" in values and values["role"].value != user.role:
            user.role = values["role"].value
            revoke = True
        if "is_active" in values and values["is_active"] != user.is_active:
            user.is_active = values["is_active"]
            revoke = revoke or not user.is_active
        if values:
            await self._flush()
        if revoke:
            await revoke_user_tokens(self.session, user.id)
        log.info("user updated", user_id=user.id, fields=sorted(values), tokens_revoked=revoke)
        return user

    async def delete(self, user_id: int, *, actor_id: int) -> None:
        """Delete a user; their refresh tokens go with them (ON DELETE CASCADE).

        An admin deleting their own account gets 409 (SelfLockout).
        """
        if user_id == actor_id:
            raise SelfLockout("You cannot delete your own account")
        user = await self.get(user_id, for_update=True)
        await self.session.delete(user)
        await self.session.flush()
        log.info("user deleted", user_id=user_id)

    async def _flush(self) -> None:
        try:
            await self.session.flush()
        except IntegrityError as error:
            if getattr(error.orig, "sqlstate", None) == UNIQUE_VIOLATION:
                raise EmailTaken("Another user already has this email") from error
            raise


async def ensure_first_admin(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> bool:
    """Create FIRST_ADMIN_EMAIL as an admin when no user has that email. True when created.

    Idempotent, and safe when several workers start at once: an existing account (whatever
    its role or password now) is left alone.
    """
    if not settings.first_admin_email or settings.first_admin_password is None:
        return False
    data = UserCreate(
        email=settings.first_admin_email,
        password=settings.first_admin_password,
        role=Role.admin,
    )
    async with sessionmaker() as session, session.begin():
        exists = await session.scalar(
            select(User.id).where(func.lower(User.email) == data.email.lower())
        )
        if exists is not None:
            return False
        password_hash = await asyncio.to_thread(hash_password, data.password.get_secret_value())
        created = await session.scalar(
            insert(User)
            .values(email=data.email, password_hash=password_hash, role=Role.admin.value)
            .on_conflict_do_nothing()
            .returning(User.id)
        )
    if created is not None:
        log.info("first admin created", user_id=created)
    return created is not None
