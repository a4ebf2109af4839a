"""Pure ASGI middleware: the edge (request id, security headers, in-progress gauge, access
log, last-resort errors) and the body limit."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import (
    PROBLEM_MEDIA_TYPE,
    UNAVAILABLE_DETAIL,
    UNAVAILABLE_HEADERS,
    count_unavailable,
    problem_body,
)
from app.core.logging import (
    end_request_context,
    get_logger,
    start_request_context,
    write_access_line,
)
from app.core.metrics import METRICS_PATH, requests_in_progress
from app.db.faults import is_unavailable

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
# Request ids need to be unique, not secret: a seeded PRNG, not os.urandom (a syscall each).
_ids = random.Random()
error_log = get_logger("app.errors")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template, never the raw path (ids would explode cardinality)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and ":" in path:
        # `/products/{product_id}` for the route written `/products/{product_id:id}`.
        path = route.path_format  # type: ignore[union-attr]
    return path if isinstance(path, str) else "<unmatched>"


async def send_problem(
    scope: Scope,
    send: Send,
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
    *,
    type_slug: str = "about:blank",
) -> None:
    body = problem_body(
        status=status,
        detail=detail,
        instance=scope.get("path", ""),
        request_id=scope.get("request_id", ""),
        type_slug=type_slug,
    )
    raw_headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class EdgeMiddleware:
    """The outermost layer of the service's own: the request id in and out, the security
    headers, the requests-in-progress gauge, one access-log line per request, and a last-resort
    503 or 500. One layer rather than one per concern: each pure ASGI layer wraps `send` anew
    for every request."""

    # 'unsafe-inline' for scripts and styles: Swagger UI and ReDoc boot from inline code.
    CSP = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; frame-ancestors 'none'"
    )

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"content-security-policy", self.CSP.encode()),
        ]
        if hsts:
            self.headers.append(
                (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER)
        valid = incoming is not None and _VALID_REQUEST_ID.match(incoming) is not None
        request_id = incoming.decode() if incoming and valid else f"{_ids.getrandbits(128):032x}"
        scope["request_id"] = request_id
        start_request_context(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        added = [*self.headers, (REQUEST_ID_HEADER, request_id.encode())]

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        # /metrics itself is not counted: a scrape would always see itself in progress.
        in_progress = (
            None if scope["path"] == METRICS_PATH else requests_in_progress(scope["method"])
        )
        if in_progress is not None:
            in_progress.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as error:
            if not response_started and is_unavailable(error):
                # A database fault no handler knew (app.db.faults): still a 503, not a bug.
                count_unavailable(error)
                await send_problem(
                    scope,
                    send_with_headers,
                    503,
                    UNAVAILABLE_DETAIL,
                    UNAVAILABLE_HEADERS,
                    type_slug="service-unavailable",
                )
                return
            error_log.exception("unhandled error", method=scope["method"], path=scope["path"])
            if not response_started:
                await send_problem(scope, send_with_headers, 500, "Internal server error")
        finally:
            if in_progress is not None:
                in_progress.dec()
            write_access_line(
                method=scope["method"],
                route=route_template(scope),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                user_id=scope.get("user_id"),
            )
            end_request_context()


class BodyLimitMiddleware:
    """413 as soon as a body passes its limit, counted while it streams in.

    A declared Content-Length over the limit is refused before any byte is read; a chunked
    body is cut off at the first chunk that crosses the limit.
    """

    def __init__(self, app: ASGIApp, default_limit: int, limits_by_path: dict[str, int]) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits_by_path = limits_by_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits_by_path.get(scope["path"], self.default_limit)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_problem(scope, send, 413, f"The request body exceeds {limit} bytes")
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # HTTPException passes through FastAPI's body parsing untouched.
                    raise HTTPException(413, f"The request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)
