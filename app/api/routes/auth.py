from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import CurrentUser, JsonBody, SessionDep, SettingsDep
from app.api.routing import api_router, problem_responses
from app.schemas.auth import LogoutRequest, RefreshRequest, TokenPair
from app.services.auth import AuthService, IssuedTokens, LoginService

router = api_router(prefix="/auth", tags=["auth"])


async def password_form(
    username: Annotated[str, Form()],
    password: Annotated[str, Form(json_schema_extra={"format": "password"})],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
    scope: Annotated[str, Form()] = "",
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
) -> OAuth2PasswordRequestForm:
    """OAuth2PasswordRequestForm's fields, in an async dependency: FastAPI runs a class
    dependency on the shared thread pool, which a burst of logins must leave alone."""
    return OAuth2PasswordRequestForm(
        grant_type=grant_type,
        username=username,
        password=password,
        scope=scope,
        client_id=client_id,
        client_secret=client_secret,
    )


def _token_response(tokens: IssuedTokens, response: Response) -> TokenPair:
    # RFC 6749 section 5.1: token responses must not be cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


@router.post("/token", response_model=TokenPair, responses=problem_responses(429, 503))
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends(password_form)],
    request: Request,
    response: Response,
    settings: SettingsDep,
) -> TokenPair:
    """Log in with email (`username`) and password; get an access and a refresh token."""
    # No request session: the service takes connections only around, not during, hashing.
    state = request.app.state
    login = LoginService(
        state.sessionmaker, settings, throttle=state.login_throttle, hasher=state.password_hasher
    )
    tokens = await login.login(
        email=form.username,
        password=form.password,
        client=request.client.host if request.client else "unknown",
    )
    return _token_response(tokens, response)


@router.post(
    "/refresh",
    response_model=TokenPair,
    dependencies=[JsonBody],
    responses=problem_responses(415),
)
async def refresh_token(
    body: RefreshRequest, response: Response, session: SessionDep, settings: SettingsDep
) -> TokenPair:
    """Trade a refresh token for a new pair; presenting a spent one revokes its family."""
    tokens = await AuthService(session, settings).refresh(body.refresh_token)
    return _token_response(tokens, response)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[JsonBody],
    responses=problem_responses(415),
)
async def logout(
    body: LogoutRequest, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """Revoke the refresh token's family; 204 even when the token is unknown or not yours."""
    await AuthService(session, settings).logout(body.refresh_token, user_id=user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
