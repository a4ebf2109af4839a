"""One place that turns every error into an RFC 9457 problem+json response."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.api.routing import allowed_methods
from app.core.errors import DomainError
from app.core.logging import get_logger
from app.core.metrics import DB_ERRORS
from app.db.faults import BROKEN_CONNECTION, DBAPI_ERROR, is_unavailable, sqlstate
from app.schemas.problem import PROBLEM_MEDIA_TYPE as PROBLEM_MEDIA_TYPE

log = get_logger("app.errors")


def problem_type(slug: str) -> str:
    return slug if slug == "about:blank" else f"/problems/{slug}"


def problem_body(
    *,
    status: int,
    detail: str,
    instance: str,
    request_id: str,
    title: str | None = None,
    type_slug: str = "about:blank",
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "type": problem_type(type_slug),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return orjson.dumps(body)


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_slug: str = "about:blank",
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body = problem_body(
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=request.scope.get("request_id", ""),
        title=title,
        type_slug=type_slug,
        errors=errors,
        extra=extra,
    )
    return Response(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def domain_problem(request: Request, error: DomainError) -> Response:
    return problem_response(
        request,
        error.status,
        error.detail,
        title=error.title,
        type_slug=error.type_slug,
        errors=getattr(error, "errors", None),
        headers=error.headers or None,
    )


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return domain_problem(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = exc.headers
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route matches {request.url.path}"
    elif exc.status_code == 405:
        allow = allowed_methods(request.scope, request.app.router.routes)
        headers = {**(headers or {}), "Allow": allow}
        detail = f"{request.method} is not allowed here; allowed: {allow}"
    return problem_response(request, exc.status_code, detail, headers=headers)


def _loc(loc: tuple[Any, ...]) -> list[str | int]:
    return [part if isinstance(part, int) else str(part) for part in loc]


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    if any(error["type"] == "json_invalid" for error in raw):
        return problem_response(
            request, 400, "The request body is not valid JSON", type_slug="malformed-body"
        )
    # Only loc, msg and type: never echo the input, which may hold a password.
    errors = [{"loc": _loc(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in raw]
    return problem_response(
        request,
        422,
        "The request failed validation",
        title="Unprocessable content",
        type_slug="validation-error",
        errors=errors,
    )


UNAVAILABLE_DETAIL = "The database is not answering; try again shortly"
UNAVAILABLE_HEADERS = {"Retry-After": "5"}


def count_unavailable(exc: BaseException) -> None:
    DB_ERRORS.labels(kind="unavailable").inc()
    log.warning("database unavailable", error=type(exc).__name__)


def _unavailable(request: Request, exc: BaseException) -> Response:
    count_unavailable(exc)
    return problem_response(
        request,
        503,
        UNAVAILABLE_DETAIL,
        type_slug="service-unavailable",
        headers=UNAVAILABLE_HEADERS,
    )


async def database_error(request: Request, exc: Exception) -> Response:
    """The answer to any database error: 503 when the server is unavailable (whatever the
    wrapping, app.db.faults), 409 or 422 for the client's data, else 500."""
    if is_unavailable(exc):
        return _unavailable(request, exc)
    if isinstance(exc, (sa_exc.DBAPIError, asyncpg.PostgresError, DBAPI_ERROR)):
        state = sqlstate(exc)
        if state == "23505":
            DB_ERRORS.labels(kind="unique_violation").inc()
            return problem_response(
                request, 409, "The resource conflicts with an existing one", type_slug="conflict"
            )
        if state.startswith("23") or state.startswith("22"):
            # Constraint or data errors the schemas did not catch: the client's input.
            DB_ERRORS.labels(kind="invalid_data").inc()
            return problem_response(
                request,
                422,
                "The database rejected a value in the request",
                title="Unprocessable content",
                type_slug="validation-error",
                errors=[{"loc": ["body"], "msg": "value cannot be stored", "type": "value_error"}],
            )
        if state == "57014":
            DB_ERRORS.labels(kind="statement_timeout").inc()
            return problem_response(
                request,
                503,
                "The database did not answer in time",
                type_slug="service-unavailable",
                headers={"Retry-After": "5"},
            )
    DB_ERRORS.labels(kind="other").inc()
    log.exception("database error")
    return problem_response(request, 500, "Internal server error")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for database in (
        sa_exc.SQLAlchemyError,
        asyncpg.PostgresError,
        DBAPI_ERROR,
        *BROKEN_CONNECTION,
    ):
        app.add_exception_handler(database, database_error)
