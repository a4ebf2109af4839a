"""Who is calling: the user behind a token, looked up by id and cached briefly per process."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.security import Role
from app.db.session import run_read


@dataclass(frozen=True, slots=True)
class Principal:
    id: int
    email: str
    role: Role

    def has_role(self, minimum: Role) -> bool:
        return self.role.rank >= minimum.rank


class PrincipalCache:
    """Active users by id, for `ttl` seconds.

    A token proves who signed in; this says whether they may still act, and with which role.
    Changes made through this process invalidate the entry at once; other processes see them
    within `ttl` seconds, far inside one access-token lifetime.
    """

    def __init__(self, engine: AsyncEngine, ttl: float = 5.0) -> None:
        self._engine = engine
        self._ttl = ttl
        self._entries: dict[int, tuple[float, Principal | None]] = {}

    async def get(self, user_id: int) -> Principal | None:
        now = time.monotonic()
        entry = self._entries.get(user_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        row = await run_read(
            self._engine,
            lambda connection: connection.fetchrow(
                "SELECT id, email, role FROM users WHERE id = $1 AND is_active", user_id
            ),
        )
        principal = (
            Principal(id=row["id"], email=row["email"], role=Role(row["role"])) if row else None
        )
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[user_id] = (now + self._ttl, principal)
        return principal

    def invalidate(self, user_id: int) -> None:
        self._entries.pop(user_id, None)
