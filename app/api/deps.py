"""Dependency aliases: the one place routes get settings, the database and the caller from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import Forbidden, Unauthorized, UnsupportedMediaType
from app.core.logging import bind_request_context
from app.core.security import AccessTokenVerifier, Role
from app.db.session import get_session
from app.schemas.base import MAX_BIGINT
from app.services.principals import Principal, PrincipalCache
from app.services.product_queries import ProductQueries


# Dependencies are `async def` even when they do not await: FastAPI runs plain `def`
# dependencies in a worker thread, a thread hop per call on the hot path.
async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_product_queries(request: Request) -> ProductQueries:
    queries: ProductQueries = request.app.state.product_queries
    return queries


async def get_principals(request: Request) -> PrincipalCache:
    principals: PrincipalCache = request.app.state.principals
    return principals


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ProductQueriesDep = Annotated[ProductQueries, Depends(get_product_queries)]
PrincipalsDep = Annotated[PrincipalCache, Depends(get_principals)]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def get_current_user(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    if not token:
        raise Unauthorized("A bearer token is required")
    verifier: AccessTokenVerifier = request.app.state.token_verifier
    claims = verifier.verify(token)
    principals: PrincipalCache = request.app.state.principals
    principal = await principals.get(claims.user_id)
    if principal is None:
        raise Unauthorized("The token's user is unknown or deactivated")
    request.scope["user_id"] = principal.id
    bind_request_context(user_id=principal.id)
    return principal


def require_role(minimum: Role) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        user: Annotated[Principal, Depends(get_current_user)],
    ) -> Principal:
        if not user.has_role(minimum):
            raise Forbidden(f"This action needs the {minimum.value} role")
        return user

    return dependency


async def get_reader(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal | None:
    """Callers of product and category reads: anyone when PUBLIC_READ is on, else a token."""
    if request.app.state.settings.public_read and not token:
        return None
    return await get_current_user(request, token)


async def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("This endpoint takes application/json")


CurrentUser = Annotated[Principal, Depends(get_current_user)]
Reader = Annotated[Principal | None, Depends(get_reader)]
Editor = Annotated[Principal, Depends(require_role(Role.editor))]
Admin = Annotated[Principal, Depends(require_role(Role.admin))]
JsonBody = Depends(require_json)

# Entity tags as RFC 9110 writes them; a header of another form is a 422. A well-formed tag this
# service did not issue (it issues `"<version>"`, app.api.etag) is a precondition that fails:
# 412 for If-Match, no 304 for If-None-Match, as HTTP says.
_ENTITY_TAG = r'(W/)?"[\x21\x23-\x7e\x80-\xff]*"'
_ENTITY_TAGS = rf"{_ENTITY_TAG}(\s*,\s*{_ENTITY_TAG})*"
IF_MATCH_PATTERN = rf"^\s*(\*|{_ENTITY_TAGS})\s*$"
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        pattern=IF_MATCH_PATTERN,
        description='the ETag the change is based on, e.g. `"3"` (or `*`); a stale one is a 412',
    ),
]
IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        pattern=IF_MATCH_PATTERN,
        description='the ETag you hold, e.g. `"3"` (or `*`): 304 when it is still current',
    ),
]

ProductId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
CategoryId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
UserId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
