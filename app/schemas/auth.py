"""Token bodies: what /auth/token and /auth/refresh answer, and what refresh and logout take."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from app.schemas.base import Schema

# Refresh tokens are 43 characters. The cap is loose on purpose: any other string, an access
# token included, must get the same 401 as a wrong token, not a 422 that tells them apart.
OpaqueToken = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class TokenPair(Schema):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class RefreshRequest(Schema):
    refresh_token: OpaqueToken


class LogoutRequest(Schema):
    refresh_token: OpaqueToken
