"""The route class every router uses: JSON bodies parsed with exact decimals."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from app.schemas.problem import Problem

_MAX_INT_DIGITS = 40


def _parse_int(text: str) -> int | Decimal:
    # Python refuses to parse integers of more than 4300 digits (a 400 deep inside FastAPI);
    # as a Decimal the schema's range check answers 422 like for any other out-of-range value.
    return int(text) if len(text) <= _MAX_INT_DIGITS else Decimal(text)


def _reject_constant(name: str) -> None:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


class DecimalJSONRequest(Request):
    """Money must never pass through a float: JSON numbers with a fraction become Decimal."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(
                await self.body(),
                parse_float=Decimal,
                parse_int=_parse_int,
                parse_constant=_reject_constant,
            )
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
