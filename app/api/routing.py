"""The route class every router uses (JSON bodies parsed with exact decimals), the `Allow` of
a 405, and the OpenAPI `responses=` of the errors a route answers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from app.api.fastapi_internals import effective_route
from app.api.plain_dependencies import PlainPlan
from app.core import exact_json
from app.schemas.base import MAX_BIGINT
from app.schemas.problem import PROBLEM_MEDIA_TYPE, Problem, ValidationProblem


class IdConvertor(Convertor[int]):
    """`{name:id}` in a route's path: digits, as an int. Starlette's `int` convertor calls
    int() on any run of digits, which refuses more than 4,300 of them (a 500); a number too
    long for any id here becomes one past the largest, so the route's `le=` answers 422."""

    regex = "[0-9]+"
    _max_digits = len(str(MAX_BIGINT))

    def convert(self, value: str) -> int:
        return int(value) if len(value) <= self._max_digits else MAX_BIGINT + 1

    def to_string(self, value: int) -> str:
        return str(int(value))


# Registered before any router defines a route: every module with routes imports this one.
register_url_convertor("id", IdConvertor())


class DecimalJSONRequest(Request):
    """Money must never pass through a float: JSON numbers with a fraction become Decimal."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = exact_json.loads(await self.body())
        return self._json


class DecimalJSONRoute(APIRoute):
    """Every router's route class: JSON bodies with exact decimals, and plain routes answered
    without FastAPI's dependency solving (app.api.plain_dependencies) unless the app's
    `state.fast_path` is off."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        plan = PlainPlan.of(self)
        overrides = effective_route(self).dependency_overrides_provider

        async def decimal_json_handler(request: Request) -> Response:
            if (
                plan is not None  # no body: no JSON to parse
                and not getattr(overrides, "dependency_overrides", None)
                and getattr(request.app.state, "fast_path", True)
                and (response := await plan.answer(request)) is not None
            ):
                return response
            return await handler(DecimalJSONRequest(request.scope, request.receive))

        return decimal_json_handler


def allowed_methods(scope: Scope, routes: list[BaseRoute]) -> str:
    """The `Allow` of a 405: the methods of every route on the path. Starlette's own lists only
    the first route that matched the path, and GET /products and POST /products are two."""
    methods: set[str] = set()
    # FastAPI keeps included routers nested; this walks their routes as its routing does.
    for route in iter_route_contexts(routes):
        route_methods = route.methods
        if route_methods and route.matches(scope)[0] is not Match.NONE:
            methods |= route_methods
    return ", ".join(sorted(methods))


def api_router(**kwargs: Any) -> APIRouter:
    return APIRouter(route_class=DecimalJSONRoute, **kwargs)


ETAG_HEADER = {
    "ETag": {
        "description": 'the product\'s version, e.g. `"3"`: send it back in If-Match',
        "required": True,
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
    }
}
LOCATION_HEADER = {
    "Location": {
        "description": "the path of the resource created",
        "required": True,
        "schema": {"type": "string"},
    }
}
REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same Idempotency-Key",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    }
}

# Headers an error response always carries, by status.
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer`: send a valid access token",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    **{
        status: {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
        for status in (429, 503)
    },
}


def problem_schema_ref(status: int) -> dict[str, str]:
    model = ValidationProblem if status == 422 else Problem
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def problem_response_doc(status: int) -> dict[str, Any]:
    """One error status in OpenAPI: problem+json with its schema (errors[] for 422), headers."""
    doc: dict[str, Any] = {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": problem_schema_ref(status)}},
    }
    if status in _ERROR_HEADERS:
        doc["headers"] = _ERROR_HEADERS[status]
    return doc


def problem_responses(*codes: int, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the errors a route answers: `codes`, 503 (the database), 401
    unless `auth=False`. app.api.openapi adds 422, and 400 and 413 where there is a body."""
    statuses = {*codes, 503, *((401,) if auth else ())}
    return {status: problem_response_doc(status) for status in sorted(statuses)}
