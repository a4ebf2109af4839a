"""The route class every router uses: JSON bodies parsed with exact decimals."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from app.core import exact_json
from app.schemas.problem import Problem


class DecimalJSONRequest(Request):
    """Money must never pass through a float: JSON numbers with a fraction become Decimal."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = exact_json.loads(await self.body())
        return self._json


class DecimalJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def decimal_json_handler(request: Request) -> Response:
            return await handler(DecimalJSONRequest(request.scope, request.receive))

        return decimal_json_handler


def api_router(**kwargs: Any) -> APIRouter:
    return APIRouter(route_class=DecimalJSONRoute, **kwargs)


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error statuses a route can answer (401 and 422 always)."""
    return {
        code: {"model": Problem, "content": {"application/problem+json": {}}}
        for code in sorted({401, 422, *codes})
    }
