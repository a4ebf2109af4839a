"""The one internal of prometheus-fastapi-instrumentator the service relies on: its middleware's
`_get_handler` hook, overridden here and nowhere else.

Private API: tests/unit/test_internals.py checks that the middleware still calls it, with what
it returns deciding exclusion, and pyproject.toml pins the instrumentator to the minor version
that test has passed on.
"""

from __future__ import annotations

from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from starlette.requests import Request


class HandlerAfterRouting(PrometheusInstrumentatorMiddleware):
    """The instrumentator's middleware, minus its guess of the route before routing.

    To name the handler up front it matches the request against every route, a second routing
    pass that cost a fifth of a hot read. The service's instrumentation labels by the template
    routing itself set (app.api.metrics), so the handler here is only checked against
    `excluded_handlers`: the raw path does that (from the scope: `request.url` would parse the
    whole URL).
    """

    def _get_handler(self, request: Request) -> tuple[str, bool]:
        path: str = request.scope["path"]
        return path, True
