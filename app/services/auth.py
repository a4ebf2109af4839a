"""Login, refresh-token rotation with reuse detection, and logout.

Refresh tokens are opaque random strings; only their SHA-256 is stored. Each login starts a
family; each refresh spends the presented token and issues the next one in the same family.
A spent token presented again means it was stolen (or the client is confused): the whole
family is revoked, so the thief and the legitimate holder must both log in again.

A login holds no database connection while it hashes: it looks the user up in one short
transaction, verifies the password with no connection, and issues the tokens in a second one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.errors import InvalidCredentials, InvalidRefreshToken
from app.core.logging import get_logger
from app.core.metrics import LOGIN_FAILURES
from app.core.security import (
    create_access_token,
    hash_password,
    hash_token,
    new_refresh_token,
    verify_password,
)
from app.models import RefreshToken, User
from app.schemas.user import MAX_PASSWORD_LENGTH
from app.services.login_throttle import Attempt, LoginThrottle
from app.services.password_hasher import LoginBusy, PasswordHasher

log = get_logger("app.auth")
MAX_EMAIL_LENGTH = 320


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int


def _verify(password: str, password_hash: str | None) -> tuple[bool, bool]:
    if len(password) > MAX_PASSWORD_LENGTH:
        return False, False
    try:
        return verify_password(password, password_hash)
    except ValueError:
        # bcrypt refuses passwords over 72 bytes instead of answering "no match".
        return False, False


async def revoke_user_tokens(session: AsyncSession, user_id: int) -> None:
    """Revoke every refresh token of a user: their next refresh fails.

    Call it holding the user's row lock (FOR UPDATE): a refresh holds that row FOR SHARE, so
    none can slip a new token past this revocation.
    """
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )


async def _lock_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"catalog.refresh_family.{family_id}"},
    )


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True, slots=True)
class _Account:
    id: int
    password_hash: str
    is_active: bool


class LoginService:
    """Logins, with the throttle counted before and no connection held while hashing.

    The one service that owns its transactions: the request's session would keep its
    connection from the user lookup to the response, through the hashing in between.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        throttle: LoginThrottle,
        hasher: PasswordHasher,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.throttle = throttle
        self.hasher = hasher

    async def login(self, *, email: str, password: str, client: str) -> IssuedTokens:
        """Count the attempt, verify the password on a hashing slot, issue a token pair.

        The same 401 and the same failure reason for an unknown email (verified against a
        dummy hash, so it takes as long), a wrong password and a deactivated account.
        """
        attempt = await self.throttle.begin(email=email, client=client)
        try:
            async with self.hasher.slot():
                account = await self._find(email)
                matches, needs_rehash = await self.hasher.run(
                    _verify, password, account.password_hash if account else None
                )
                new_hash = None
                if account is not None and matches and account.is_active and needs_rehash:
                    new_hash = await self.hasher.run(hash_password, password)
        except Exception as error:
            # No password was checked (busy, or the database failed): no failure to count.
            await self.throttle.give_back(attempt)
            if isinstance(error, LoginBusy):
                LOGIN_FAILURES.labels(reason="busy").inc()
            raise
        if account is None or not matches or not account.is_active:
            # The attempt keeps its hits: this is the failure they count. The log, read by
            # operators only, says which of the three it was.
            why = (
                "unknown_email" if account is None else "inactive" if matches else "wrong_password"
            )
            LOGIN_FAILURES.labels(reason="invalid_credentials").inc()
            log.info("login failed", reason=why, user_id=account.id if account else None)
            raise InvalidCredentials("Incorrect email or password")
        return await self._issue(account, new_hash, attempt)

    async def _find(self, email: str) -> _Account | None:
        lookup = email.strip().lower()
        # No stored email holds a NUL (PostgreSQL refuses it) or passes 320 characters.
        if "\x00" in lookup or len(lookup) > MAX_EMAIL_LENGTH:
            return None
        async with self.sessionmaker() as session:  # its connection goes back at the end
            row = (
                await session.execute(
                    select(User.id, User.password_hash, User.is_active).where(
                        func.lower(User.email) == lookup
                    )
                )
            ).first()
        return _Account(row.id, row.password_hash, row.is_active) if row else None

    async def _issue(
        self, account: _Account, new_hash: str | None, attempt: Attempt
    ) -> IssuedTokens:
        await self.throttle.succeeded(attempt)
        async with self.sessionmaker() as session, session.begin():
            # Shared, as a refresh takes it: a deactivation or role change waits for the
            # token to exist (and then revokes it) or is seen here.
            user = await session.scalar(
                select(User).where(User.id == account.id).with_for_update(read=True)
            )
            if user is None or not user.is_active:
                LOGIN_FAILURES.labels(reason="invalid_credentials").inc()
                raise InvalidCredentials("Incorrect email or password")
            # Unless the password changed since it was verified.
            rehashed = False
            if new_hash is not None and user.password_hash == account.password_hash:
                user.password_hash, rehashed = new_hash, True
            tokens = await AuthService(session, self.settings).issue(user, family_id=uuid.uuid4())
        log.info("login", user_id=user.id, rehashed=rehashed)
        return tokens


class AuthService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """Spend the token and issue the next pair; a spent token revokes its family.

        Locks, always in this order so that nothing can deadlock: the user row (shared, so an
        admin's role change or deactivation waits for us or we for it), then the family
        (refreshes, reuse checks and logouts of one family run one at a time, so two
        concurrent refreshes of one token let exactly one through).
        """
        invalid = InvalidRefreshToken("The refresh token is invalid, expired or revoked")
        token_hash = hash_token(refresh_token)
        found = (
            await self.session.execute(
                select(RefreshToken.family_id, RefreshToken.user_id).where(
                    RefreshToken.token_hash == token_hash
                )
            )
        ).first()
        if found is None:
            raise invalid
        user = await self.session.scalar(
            select(User).where(User.id == found.user_id).with_for_update(read=True)
        )
        await _lock_family(self.session, found.family_id)
        now = datetime.now(UTC)
        spent = await self.session.scalar(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.spent_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(spent_at=now)
            .returning(RefreshToken.id)
            .execution_options(synchronize_session=False)
        )
        if spent is None:
            await self._revoke_if_reused(token_hash)
            raise invalid
        if user is None or not user.is_active:
            raise invalid
        return await self.issue(user, family_id=found.family_id)

    async def logout(self, refresh_token: str, *, user_id: int) -> None:
        """Revoke the token's family when it belongs to the caller.

        A token that is unknown or someone else's changes nothing and raises nothing: the
        answer is 204 either way, so logout cannot be used to probe for valid tokens.
        """
        family_id = await self.session.scalar(
            select(RefreshToken.family_id).where(
                RefreshToken.token_hash == hash_token(refresh_token),
                RefreshToken.user_id == user_id,
            )
        )
        if family_id is None:
            return
        await _lock_family(self.session, family_id)
        await _revoke_family(self.session, family_id)
        log.info("logout", user_id=user_id, family_id=str(family_id))

    async def _revoke_if_reused(self, token_hash: str) -> None:
        token = await self.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        )
        if token is None or token.spent_at is None or token.revoked_at is not None:
            return
        await _revoke_family(self.session, token.family_id)
        # The one commit in a service: the 401 that follows rolls the request's transaction
        # back, and this revocation must survive it.
        await self.session.commit()
        log.warning(
            "spent refresh token presented again: family revoked",
            user_id=token.user_id,
            family_id=str(token.family_id),
        )

    async def issue(self, user: User, *, family_id: uuid.UUID) -> IssuedTokens:
        now = datetime.now(UTC)
        access_token, expires_in = create_access_token(
            self.settings, user_id=user.id, role=user.role, now=now
        )
        refresh_token = new_refresh_token()
        self.session.add(
            RefreshToken(
                token_hash=hash_token(refresh_token),
                family_id=family_id,
                user_id=user.id,
                issued_at=now,
                expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            )
        )
        await self.session.flush()
        return IssuedTokens(access_token, refresh_token, expires_in)
