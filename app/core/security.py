"""Password hashing and access tokens. No I/O here: services and dependencies call these."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from jose import JWTError, jwt
from passlib.context import CryptContext

from app.core.config import Settings
from app.core.errors import Unauthorized

JWT_ALGORITHM = "HS256"
ACCESS = "access"

# argon2id first; bcrypt hashes (if any were imported) still verify and are rehashed on login.
password_context = CryptContext(schemes=["argon2", "bcrypt"], deprecated="auto")


class Role(StrEnum):
    viewer = "viewer"
    editor = "editor"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Role.viewer: 0, Role.editor: 1, Role.admin: 2}


def hash_password(password: str) -> str:
    return str(password_context.hash(password))


@cache
def _dummy_hash() -> str:
    return str(password_context.hash(secrets.token_urlsafe(16)))


def verify_password(password: str, password_hash: str | None) -> tuple[bool, bool]:
    """(matches, needs_rehash). With no hash, spend the same time on a dummy one.

    Verifying against a dummy hash for an unknown email keeps login time the same whether or
    not the account exists, so timing does not reveal which emails are registered.
    """
    if password_hash is None:
        password_context.verify(password, _dummy_hash())
        return False, False
    if not password_context.verify(password, password_hash):
        return False, False
    return True, password_context.needs_update(password_hash)


def hash_token(token: str) -> str:
    """Refresh tokens are random 256-bit strings, so a fast hash is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    role: Role
    jti: str
    expires_at: datetime


def create_access_token(
    settings: Settings, *, user_id: int, role: str, now: datetime | None = None
) -> tuple[str, int]:
    issued = now or datetime.now(UTC)
    ttl = settings.access_token_ttl_seconds
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "role": role,
        "type": ACCESS,
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl)).timestamp()),
        "jti": uuid.uuid4().hex,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    token = jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=JWT_ALGORITHM)
    return token, ttl


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[JWT_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require_exp": True, "require_iat": True, "require_sub": True},
        )
        if claims.get("type") != ACCESS:
            raise Unauthorized("Not an access token")
        return AccessClaims(
            user_id=int(claims["sub"]),
            role=Role(claims["role"]),
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
    except (JWTError, KeyError, ValueError, TypeError) as exc:
        raise Unauthorized("Invalid or expired access token") from exc


class AccessTokenVerifier:
    """`decode_access_token` with a cache of tokens already verified.

    A client sends the same token on every request until it expires; checking its HMAC and
    parsing its JSON again each time is a measurable share of a hot read. A cached token is
    still refused once past its `exp`. One verifier per app, so per secret and audience.
    """

    def __init__(self, settings: Settings, max_entries: int = 4096) -> None:
        self.settings = settings
        self.max_entries = max_entries
        self._verified: dict[str, AccessClaims] = {}

    def verify(self, token: str) -> AccessClaims:
        claims = self._verified.get(token)
        if claims is None:
            claims = decode_access_token(self.settings, token)
            if len(self._verified) >= self.max_entries:
                self._verified.clear()
            self._verified[token] = claims
        if claims.expires_at <= datetime.now(UTC):
            self._verified.pop(token, None)
            raise Unauthorized("Invalid or expired access token")
        return claims
