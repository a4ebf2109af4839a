"""The yardstick: a bare ASGI app on an asyncpg pool, serving the same product JSON.

No framework, no ORM, no auth: the most a Python service on this stack can do per core.
Run by bench/read_bench.py; not part of the service.
"""

from __future__ import annotations

import os
from typing import Any

import asyncpg

from app.services.product_queries import PRODUCT_JSON

DSN = os.environ["BENCH_DSN"]
pool: asyncpg.Pool | None = None
ONE = f"SELECT {PRODUCT_JSON} FROM products p WHERE p.id = $1 AND p.deleted_at IS NULL"
PAGE = (
    f"SELECT {PRODUCT_JSON} FROM products p WHERE p.deleted_at IS NULL "
    "ORDER BY p.created_at DESC, p.id DESC LIMIT 20"
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                pool = await asyncpg.create_pool(DSN, min_size=10, max_size=10)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                assert pool is not None
                await pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert pool is not None
    path: str = scope["path"]
    if path == "/products":
        rows = await pool.fetch(PAGE)
        body = ('{"items":[' + ",".join(r[0] for r in rows) + '],"next_cursor":null}').encode()
        status = 200
    else:
        text = await pool.fetchval(ONE, int(path.rsplit("/", 1)[1]))
        body, status = (text.encode(), 200) if text else (b"{}", 404)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
