"""FastAPI alone, for bench/read_bench.py: the framework's own cost on the ceiling's work.

The ceiling's pool, queries and orjson rows (bench/ceiling_app.py) behind two FastAPI routes,
by id and a page: no middleware, no auth, no metrics, no access line, a plain Response. What it
loses to the ceiling is what FastAPI's routing, parameter parsing and request/response layers
cost; no service on this framework serves more than it. Not part of the service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from bench.ceiling_app import ONE, Ceiling, answer_one, from_env


def create() -> FastAPI:
    """`uvicorn --factory bench.framework_floor_app:create`: the ceiling's environment."""
    ceiling: Ceiling = from_env()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ceiling.startup()
        yield
        await ceiling.shutdown()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/products/{product_id}")
    async def one(product_id: int) -> Response:
        assert ceiling.pool is not None
        async with ceiling.pool.acquire() as connection:
            status, body, headers = answer_one(await connection.fetchrow(ONE, product_id))
        # The ceiling's headers (content type, ETag) as the ASGI message carries them.
        return Response(body, status, {k.decode(): v.decode() for k, v in headers})

    @app.get("/products")
    async def page(request: Request) -> Response:
        assert ceiling.pool is not None
        async with ceiling.pool.acquire() as connection:
            body = await ceiling.page(connection, dict(request.query_params))
        return Response(body, media_type="application/json")

    return app
