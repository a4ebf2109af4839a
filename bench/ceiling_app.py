"""The ceiling: the most a Python process on this stack can serve, for bench/read_bench.py.

Raw ASGI (no framework, no auth, no middleware), an asyncpg pool that releases connections
without a reset (asyncpg's default reset is one more round trip per request), each query
prepared once per connection (asyncpg's statement cache), rows turned into JSON by orjson in
Python. It answers the requests the benchmark sends with the same JSON bodies as the service
(tests/bench/test_ceiling.py compares them), so the ratio to it is what the service's own
layers cost. Not part of the service; it validates nothing it does not have to.
"""

from __future__ import annotations

import os
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qs

import asyncpg
import orjson

from app.services.pagination import CursorCodec

COLUMNS = (
    "p.id, p.sku, p.name, p.description, p.price, p.currency, p.stock, p.status, "
    "p.category_id, p.tags, p.attributes::text AS attributes, p.version, "
    "p.created_at, p.updated_at"
)
LIVE = "p.deleted_at IS NULL"
ONE = f"SELECT {COLUMNS} FROM products p WHERE p.id = $1 AND {LIVE}"
NEWEST = f"SELECT {COLUMNS} FROM products p WHERE {LIVE} ORDER BY p.created_at DESC, p.id DESC"
PAGE = f"{NEWEST} LIMIT $1"
PAGE_AFTER = (
    f"SELECT {COLUMNS} FROM products p WHERE {LIVE} AND (p.created_at, p.id) < ($1, $2) "
    "ORDER BY p.created_at DESC, p.id DESC LIMIT $3"
)
CATEGORY_TREE = (
    "WITH RECURSIVE tree(id) AS (SELECT id FROM categories WHERE id = $1 "
    "UNION ALL SELECT c.id FROM categories c JOIN tree ON c.parent_id = tree.id) "
    "SELECT array_agg(id) FROM tree"
)
# The filtered shape the benchmark sends: a category (and its descendants), in stock, a status.
FILTERED_ORDER = {"-price": "p.price DESC, p.id DESC", "price": "p.price, p.id"}
FILTERED = (
    f"SELECT {COLUMNS} FROM products p WHERE {LIVE} AND p.category_id = ANY($1::bigint[]) "
    "AND p.stock > 0 AND p.status = $2 ORDER BY {order} LIMIT $3"
)
# A ranked search as the service ranks one: the newest WINDOW matches, best first.
SEARCH = f"""
WITH q AS (SELECT websearch_to_tsquery('english', $1) AS q),
window_ AS (
    SELECT p.id, (ts_rank(p.search, q.q) + (lower(p.sku) LIKE $2)::int)::real AS rank
    FROM products p, q
    WHERE {LIVE} AND (p.search @@ q.q OR lower(p.sku) LIKE $2)
    ORDER BY p.id DESC LIMIT $3
)
SELECT {COLUMNS}, w.rank, (SELECT min(id) FROM window_) AS bound
FROM window_ w JOIN products p ON p.id = w.id ORDER BY w.rank DESC, p.id DESC LIMIT $4
"""
WRITABLE = (
    "sku",
    "name",
    "description",
    "price",
    "currency",
    "stock",
    "status",
    "category_id",
    "tags",
    "attributes",
)
INSERT = (
    f"INSERT INTO products AS p ({', '.join(WRITABLE)}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb) "
    f"RETURNING {COLUMNS}"
)
STOCK = f"""
WITH updated AS (
    UPDATE products AS p SET stock = p.stock + $2::integer, version = p.version + 1
    WHERE p.id = $1 AND {LIVE} AND p.stock + $2::bigint BETWEEN 0 AND 2147483647
    RETURNING {COLUMNS}
), ledger AS (
    INSERT INTO stock_adjustments (product_id, user_id, delta, stock_after, reason)
    SELECT id, $3::bigint, $2::integer, stock, $4::text FROM updated
)
SELECT * FROM updated
"""
RANK_WINDOW = 200
MAX_LIMIT = 100
JSON = [(b"content-type", b"application/json")]
if TYPE_CHECKING:  # generic in asyncpg-stubs only
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]


def timestamp(value: datetime) -> str:
    # asyncpg hands timestamptz back in UTC: "+00:00" becomes the service's "Z".
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def product(row: asyncpg.Record) -> dict[str, Any]:
    price: Decimal = row["price"]
    return {
        "id": row["id"],
        "sku": row["sku"],
        "name": row["name"],
        "description": row["description"],
        "price": str(price),
        "currency": row["currency"],
        "stock": row["stock"],
        "status": row["status"],
        "category_id": row["category_id"],
        "tags": row["tags"],
        "attributes": orjson.Fragment(row["attributes"]),
        "version": row["version"],
        "created_at": timestamp(row["created_at"]),
        "updated_at": timestamp(row["updated_at"]),
    }


async def no_reset(connection: asyncpg.Connection) -> None:
    """Released connections go back as they are: no RESET ALL round trip."""


class Ceiling:
    def __init__(self, dsn: str, secret: str, user_id: int, pool_size: int = 20) -> None:
        self.dsn = dsn
        self.codec = CursorCodec(secret)
        self.user_id = user_id
        self.pool_size = pool_size
        self.pool: asyncpg.Pool | None = None

    async def startup(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=self.pool_size, max_size=self.pool_size, reset=no_reset
        )

    async def shutdown(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.startup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        status, body, headers = await self.handle(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def handle(self, scope: dict[str, Any], receive: Any) -> tuple[int, bytes, list[Any]]:
        assert self.pool is not None
        method: str = scope["method"]
        parts = scope["path"].strip("/").split("/")
        if parts[0] != "products":
            return 404, b"{}", JSON
        async with self.pool.acquire() as connection:
            if len(parts) == 1 and method == "GET":
                query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
                return 200, await self.page(connection, query), JSON
            if len(parts) == 1 and method == "POST":
                return await self.create(connection, orjson.loads(await _body(receive)))
            product_id = int(parts[1])
            if len(parts) == 3 and parts[2] == "stock" and method == "POST":
                data = orjson.loads(await _body(receive))
                row = await connection.fetchrow(
                    STOCK, product_id, data["delta"], self.user_id, data.get("reason")
                )
                return answer_one(row)
            if method == "PATCH":
                return await self.update(connection, product_id, scope, receive)
            return answer_one(await connection.fetchrow(ONE, product_id))

    async def page(self, connection: Connection, query: dict[str, str]) -> bytes:
        limit = min(int(query.get("limit", 20)), MAX_LIMIT)
        if "q" in query:
            return await self.search(connection, query["q"], limit)
        if "category_id" in query:
            ids = await connection.fetchval(CATEGORY_TREE, int(query["category_id"]))
            sql = FILTERED.format(order=FILTERED_ORDER[query.get("sort", "-price")])
            rows = await connection.fetch(sql, ids or [], query["status"], limit + 1)
            sort, key = query.get("sort", "-price"), "price"
        else:
            if "cursor" in query:
                created, last_id = self.codec.decode(query["cursor"], "-created_at")
                after = datetime.fromisoformat(created)
                rows = await connection.fetch(PAGE_AFTER, after, last_id, limit + 1)
            else:
                rows = await connection.fetch(PAGE, limit + 1)
            sort, key = "-created_at", "created_at"
        cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            value = rows[-1][key]
            last = str(value) if isinstance(value, Decimal) else value.isoformat()
            cursor = self.codec.encode(sort, [last, rows[-1]["id"]])
        return orjson.dumps({"items": [product(r) for r in rows], "next_cursor": cursor})

    async def search(self, connection: Connection, q: str, limit: int) -> bytes:
        prefix = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await connection.fetch(SEARCH, q, prefix, RANK_WINDOW, limit + 1)
        cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            cursor = self.codec.encode("rank", [last["rank"], last["bound"], last["id"]])
        return orjson.dumps({"items": [product(r) for r in rows], "next_cursor": cursor})

    async def create(
        self, connection: Connection, data: dict[str, Any]
    ) -> tuple[int, bytes, list[Any]]:
        values = (
            data["sku"],
            data["name"].strip(),
            data.get("description", ""),
            Decimal(str(data["price"])),
            data["currency"].upper(),
            data.get("stock", 0),
            data.get("status", "draft"),
            data.get("category_id"),
            list(dict.fromkeys(tag.lower() for tag in data.get("tags", []))),
            orjson.dumps(data.get("attributes", {})).decode(),
        )
        try:
            row = await connection.fetchrow(INSERT, *values)
        except asyncpg.UniqueViolationError:
            return 409, b"{}", JSON
        assert row is not None  # INSERT ... RETURNING returns the row it inserted
        location = f"/products/{row['id']}".encode()
        return 201, orjson.dumps(product(row)), [*_etag(row), (b"location", location)]

    async def update(
        self, connection: Connection, product_id: int, scope: dict[str, Any], receive: Any
    ) -> tuple[int, bytes, list[Any]]:
        data = orjson.loads(await _body(receive))
        fields = [name for name in WRITABLE if name in data]
        values: list[Any] = [product_id]
        sets = []
        for name in fields:
            value = data[name]
            if name == "price":
                value = Decimal(str(value))
            elif name == "attributes":
                value = orjson.dumps(value).decode()
            values.append(value)
            sets.append(f"{name} = ${len(values)}" + ("::jsonb" if name == "attributes" else ""))
        sets.append("version = p.version + 1")
        check = ""
        if_match = dict(scope["headers"]).get(b"if-match")
        if if_match is not None:
            values.append(int(if_match.strip(b' W/"')))
            check = f" AND p.version = ${len(values)}"
        sql = (
            f"UPDATE products AS p SET {', '.join(sets)} WHERE p.id = $1 AND {LIVE}{check} "
            f"RETURNING {COLUMNS}"
        )
        row = await connection.fetchrow(sql, *values)
        if row is None:
            exists = await connection.fetchval(ONE, product_id)
            return (412 if exists else 404), b"{}", JSON
        return 200, orjson.dumps(product(row)), _etag(row)


def _etag(row: asyncpg.Record) -> list[Any]:
    return [*JSON, (b"etag", f'"{row["version"]}"'.encode())]


def answer_one(row: asyncpg.Record | None) -> tuple[int, bytes, list[Any]]:
    """Status, JSON body and headers for a by-id read (None: not found)."""
    if row is None:
        return 404, b"{}", JSON
    return 200, orjson.dumps(product(row)), _etag(row)


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def from_env() -> Ceiling:
    """`uvicorn --factory bench.ceiling_app:from_env`: BENCH_DSN, SECRET_KEY, BENCH_USER_ID."""
    return Ceiling(
        os.environ["BENCH_DSN"], os.environ["SECRET_KEY"], int(os.environ["BENCH_USER_ID"])
    )
