"""The two hot reads, GET /products and GET /products/{id}, answered past FastAPI's routing.

They are most of a catalog's traffic, and on them FastAPI's routing, dependency solving and
exception middleware cost several times the query itself (bench/read_bench.py). This pure ASGI
middleware sits innermost and answers them with what their routes use: the `Reader`
dependency itself for the token, the same query model, the same response builders
(`app.api.routes.products`) and the app's own exception handlers for every error they raise.

A request it does not fully understand goes on to FastAPI untouched: another method or path,
an id that is not a plain number in range, query parameters that are unknown, repeated or do
not validate. So every request-validation error still comes from FastAPI, and the routes stay
the one definition of the two operations (and their OpenAPI). tests/api/test_hot_reads.py
holds both ways to the same answers.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import IF_MATCH_PATTERN, get_reader, oauth2_scheme
from app.api.problems import database_error
from app.api.routes import products
from app.db.faults import is_unavailable
from app.schemas.base import MAX_BIGINT
from app.schemas.listing import ProductListParams
from app.services.product_queries import ProductQueries

PREFIX = "/products"
_PARAMS = frozenset(ProductListParams.model_fields)
_REPEATABLE = frozenset({"tag"})
_MAX_ID_DIGITS = len(str(MAX_BIGINT))
_IF_NONE_MATCH = re.compile(IF_MATCH_PATTERN)

Answer = Callable[[ProductQueries], Awaitable[Response]]


def list_params(request: Request) -> ProductListParams | None:
    """The list's parameters, when each is known, given once (but `tag`) and valid."""
    query = request.query_params
    values: dict[str, Any] = {}
    for name in query:
        given = query.getlist(name)
        if name not in _PARAMS or (len(given) > 1 and name not in _REPEATABLE):
            return None
        values[name] = given if name in _REPEATABLE else given[0]
    try:
        return ProductListParams.model_validate(values)
    except ValidationError:
        return None


def product_id(path: str) -> int | None:
    """The id of /products/{id} when it is plain ASCII digits in the id range."""
    raw = path[len(PREFIX) + 1 :]
    if not (0 < len(raw) <= _MAX_ID_DIGITS and raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_BIGINT else None


def _valid_if_none_match(header: str | None) -> bool:
    """Absent, or of the form the route declares (another form is the route's 422)."""
    return header is None or _IF_NONE_MATCH.match(header) is not None


def _exception_handler(app: Any, error: Exception) -> Callable[..., Awaitable[Response]] | None:
    handlers = app.exception_handlers
    for cls in type(error).__mro__:
        if cls in handlers:
            handler: Callable[..., Awaitable[Response]] = handlers[cls]
            return handler
    return None


class HotReadsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        routes = {
            route.endpoint: route for route in products.router.routes if isinstance(route, APIRoute)
        }
        self.list_route = routes[products.list_products]
        self.product_route = routes[products.get_product]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] == "GET" and path.startswith(PREFIX):
            request = Request(scope, receive)
            if path == PREFIX:
                if (params := list_params(request)) is not None:
                    await self._answer(
                        request, send, self.list_route, lambda q: products.product_page(q, params)
                    )
                    return
            elif (
                path[len(PREFIX)] == "/"
                and (wanted := product_id(path)) is not None
                and _valid_if_none_match(if_none_match := request.headers.get("if-none-match"))
            ):
                await self._answer(
                    request,
                    send,
                    self.product_route,
                    lambda q: products.product_document(q, wanted, if_none_match),
                )
                return
        await self.app(scope, receive, send)

    async def _answer(self, request: Request, send: Send, route: APIRoute, answer: Answer) -> None:
        scope = request.scope
        scope["route"] = route  # as routing sets it: the access log and metrics read its template
        app = scope["app"]
        try:
            await get_reader(request, await oauth2_scheme(request))
            response = await answer(app.state.product_queries)
        except Exception as error:
            handler = _exception_handler(app, error)
            if handler is None:
                if not is_unavailable(error):
                    raise
                handler = database_error
            response = await handler(request, error)
        await response(scope, request.receive, send)
