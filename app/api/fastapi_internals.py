"""The FastAPI internals the service relies on, read here and nowhere else.

`app.api.plain_dependencies` reads a route's `Dependant` (the tree FastAPI builds from the
endpoint's signature) as FastAPI sees it for a route included through routers, and parses path,
query and header parameters with the function FastAPI's own dependency solving uses, so both
give the same values and the same errors. None of this is documented API:
tests/unit/test_internals.py checks each on real routes, and pyproject.toml pins FastAPI to the
minor version that test has passed on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation
from fastapi.dependencies.utils import request_params_to_args as _request_params_to_args
from fastapi.routing import APIRoute, _effective_route_context_var

__all__ = ["Dependant", "effective_route", "parse_params", "return_annotation"]


def effective_route(route: APIRoute) -> Any:
    """What FastAPI builds `route`'s handler from, called from `get_route_handler`.

    FastAPI keeps included routers nested: a route included through a router is served by an
    "effective context" (its full path, the including routers' dependencies, the app as
    dependency-overrides provider), set in a context variable while `get_route_handler` runs
    for it. Outside such a build, the route itself.
    """
    context = _effective_route_context_var.get()
    if context is not None and context.original_route is route:
        return context
    return route


def parse_params(
    fields: Sequence[Any], received: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Any]]:
    """(values, errors) of `fields` (a Dependant's path, query or header params) in `received`."""
    return _request_params_to_args(fields, received)


def return_annotation(call: Any) -> Any:
    """The endpoint's return annotation, resolved as FastAPI resolves it."""
    return get_typed_return_annotation(call)
