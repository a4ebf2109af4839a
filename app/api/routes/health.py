from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.problems import problem_response
from app.api.routing import problem_response_doc

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/health")
async def liveness() -> dict[str, str]:
    """Liveness: the process answers. Touches no dependency."""
    return {"status": "ok"}


async def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        outcome: dict[str, Any] = {"status": "ok"}
    except Exception as error:  # any failure means not ready; the kind is enough detail
        outcome = {"status": "error", "error": type(error).__name__}
    outcome["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return outcome


@router.get(
    "/health/ready",
    responses={503: {**problem_response_doc(503), "description": "a dependency is not ready"}},
)
async def readiness(request: Request) -> Response:
    """Readiness: PostgreSQL (and Redis when configured) answer within a short timeout."""
    state = request.app.state

    async def database() -> None:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    checks = {"database": database}
    if state.redis is not None:
        checks["redis"] = state.redis.ping
    results = dict(zip(checks, await asyncio.gather(*map(_timed, checks.values())), strict=True))
    if all(result["status"] == "ok" for result in results.values()):
        return JSONResponse({"status": "ok", "checks": results})
    return problem_response(
        request,
        503,
        "A dependency is not ready",
        type_slug="not-ready",
        headers={"Retry-After": "5"},
        extra={"checks": results},
    )
