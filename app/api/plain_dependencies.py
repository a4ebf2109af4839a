"""Answer a route without FastAPI's dependency solving when all it depends on is plain.

FastAPI solves a route's dependency tree afresh on every request (a Response object made for
the dependencies, cookies parsed, cache keys computed, overrides looked up at every level): on a
hot read that cost more than the query (docs/PERFORMANCE.md, the row with the fast path off).
Most of this service's reads depend only on *plain* dependencies: an async function, or an
object with an async `__call__` such as the OAuth2 scheme, that takes the Request and other
plain dependencies and nothing else.

For a route whose every dependency (router-level ones included) is plain, whose endpoint is
async and returns a Response, and that takes no body, `PlainPlan.of(route)` builds the tree once.
Each request then calls it in FastAPI's order, each dependency once per request as FastAPI's cache
does, parses the path, query and header parameters with FastAPI's own parser
(app.api.fastapi_internals), and calls the endpoint. The route stays FastAPI's: its routing, its
OpenAPI, the app's exception handlers for whatever a dependency raises.

The rest goes to FastAPI's handler, which answers as it always does: a route with any other
kind of dependency or parameter (a yield dependency, cookies, a body, `Response`,
`BackgroundTasks`, `SecurityScopes`, a class, a sync function), a request whose parameters do not
validate (FastAPI then builds the 422 itself), and any request while `app.dependency_overrides`
holds anything. tests/api/test_plain_dependencies.py holds both ways to the same answers.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from app.api.fastapi_internals import (
    Dependant,
    effective_route,
    parse_params,
    return_annotation,
)


def _is_async_call(call: Any) -> bool:
    if inspect.isfunction(call) or inspect.ismethod(call):
        return inspect.iscoroutinefunction(call)
    if inspect.isclass(call):
        return False
    dunder_call = type(call).__call__ if callable(call) else None
    return inspect.iscoroutinefunction(dunder_call)


def _takes_params(dependant: Dependant) -> bool:
    return bool(dependant.path_params or dependant.query_params or dependant.header_params)


def _takes_more(dependant: Dependant) -> bool:
    """Whether it takes anything but the Request (or HTTPConnection), dependencies and path,
    query or header parameters."""
    return bool(
        dependant.cookie_params
        or dependant.body_params
        or dependant.websocket_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        # OAuth scopes make FastAPI cache a dependency per scope set, not per call.
        or dependant.own_oauth_scopes
        or dependant.parent_oauth_scopes
        or dependant.concurrency is not None
    )


@dataclass(frozen=True, slots=True)
class _Dependency:
    call: Callable[..., Awaitable[Any]]
    name: str | None  # the parameter it fills; None for a router's `dependencies=[...]`
    request_params: tuple[str, ...]  # its Request or HTTPConnection parameters
    dependencies: tuple[_Dependency, ...]
    use_cache: bool

    @classmethod
    def of(cls, dependant: Dependant) -> _Dependency | None:
        """The dependency when it and everything it depends on is plain, else None."""
        if _takes_params(dependant) or _takes_more(dependant) or not _is_async_call(dependant.call):
            return None
        dependencies = tuple(cls.of(sub) for sub in dependant.dependencies)
        if any(sub is None for sub in dependencies):
            return None
        assert dependant.call is not None
        return cls(
            dependant.call,
            dependant.name,
            _request_params(dependant),
            dependencies,  # type: ignore[arg-type]
            dependant.use_cache,
        )

    async def arguments(self, request: Request, solved: dict[Any, Any]) -> dict[str, Any]:
        """Its arguments: its dependencies solved in order, and the request."""
        arguments: dict[str, Any] = {}
        for dependency in self.dependencies:
            value = await dependency.solve(request, solved)
            if dependency.name is not None:
                arguments[dependency.name] = value
        for name in self.request_params:
            arguments[name] = request
        return arguments

    async def solve(self, request: Request, solved: dict[Any, Any]) -> Any:
        if self.use_cache and self.call in solved:
            return solved[self.call]
        value = await self.call(**await self.arguments(request, solved))
        solved.setdefault(self.call, value)
        return value


@dataclass(frozen=True, slots=True)
class PlainPlan:
    endpoint: _Dependency
    dependant: Dependant

    @classmethod
    def of(cls, route: APIRoute) -> PlainPlan | None:
        """The plan of a route that qualifies (see the module's docstring), else None. Called
        from the route's `get_route_handler`: it reads the route as FastAPI builds it there."""
        route = effective_route(route)
        dependant: Dependant = route.dependant
        if route.body_field is not None or _takes_more(dependant):
            return None
        if not _returns_response(dependant.call):
            return None
        # The endpoint's own parameters are parsed per request (`answer`), not by the tree.
        endpoint = _Dependency.of(
            Dependant(
                dependencies=dependant.dependencies,
                call=dependant.call,
                request_param_name=dependant.request_param_name,
                http_connection_param_name=dependant.http_connection_param_name,
                use_cache=False,
            )
        )
        return None if endpoint is None else cls(endpoint, dependant)

    async def answer(self, request: Request) -> Response | None:
        """The endpoint's response; None when a parameter does not validate (FastAPI's 422)."""
        dependant = self.dependant
        values: dict[str, Any] = {}
        for fields, received in (
            (dependant.path_params, request.path_params),
            (dependant.query_params, request.query_params),
            (dependant.header_params, request.headers),
        ):
            if fields:
                parsed, errors = parse_params(fields, received)
                if errors:
                    return None
                values.update(parsed)
        values.update(await self.endpoint.arguments(request, {}))
        response: Response = await self.endpoint.call(**values)
        return response


def _request_params(dependant: Dependant) -> tuple[str, ...]:
    names = (dependant.request_param_name, dependant.http_connection_param_name)
    return tuple(name for name in names if name is not None)


def _returns_response(call: Any) -> bool:
    annotation = return_annotation(call)
    return inspect.isclass(annotation) and issubclass(annotation, Response)
