"""Product reads on the hot path: raw asyncpg, JSON built by PostgreSQL.

The ORM is the right tool for writes; for reads it costs several times the query itself. Here
each read is one round trip and PostgreSQL renders the same JSON `ProductRead` would (the
API tests compare the two), so Python only joins strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.errors import ProductNotFound, Unprocessable
from app.db.session import read_connection
from app.services.pagination import CursorCodec

# Same shape and formats as ProductRead: price as a string, timestamps RFC 3339 with
# microseconds and Z (see app.schemas.base.Timestamp).
PRODUCT_JSON = """json_build_object(
    'id', p.id, 'sku', p.sku, 'name', p.name, 'description', p.description,
    'price', p.price::text, 'currency', p.currency, 'stock', p.stock, 'status', p.status,
    'category_id', p.category_id, 'tags', p.tags, 'attributes', p.attributes,
    'version', p.version,
    'created_at', to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'updated_at', to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
)::text"""

SortKey = Literal["id", "-id", "created_at", "-created_at", "price", "-price", "name", "-name"]
RANK = "rank"  # the implicit sort of a search with no explicit sort

# sort -> (column expression, its cursor type cast, descending)
_SORTS: dict[str, tuple[str, str, bool]] = {
    "id": ("p.id", "bigint", False),
    "-id": ("p.id", "bigint", True),
    "created_at": ("p.created_at", "timestamptz", False),
    "-created_at": ("p.created_at", "timestamptz", True),
    "price": ("p.price", "numeric", False),
    "-price": ("p.price", "numeric", True),
    "name": ("p.name", "text", False),
    "-name": ("p.name", "text", True),
    RANK: ("ts_rank(p.search, {query})", "real", True),
}
DEFAULT_SORT = "-created_at"
SEARCH_QUERY = "(websearch_to_tsquery('simple', {q}) || websearch_to_tsquery('english', {q}))"


@dataclass(slots=True)
class ProductFilters:
    q: str | None = None
    category_id: int | None = None
    status: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ProductRow:
    version: int
    json: str


class _Params:
    """Numbered query parameters ($1, $2, ...) gathered as the SQL is assembled."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


async def get_product(connection: asyncpg.Connection, product_id: int) -> ProductRow:
    row = await connection.fetchrow(
        f"SELECT p.version, {PRODUCT_JSON} FROM products p "
        "WHERE p.id = $1 AND p.deleted_at IS NULL",
        product_id,
    )
    if row is None:
        raise ProductNotFound(f"Product {product_id} does not exist")
    return ProductRow(version=row[0], json=row[1])


def _cursor_value(value: Any) -> Any:
    # JSON-safe forms that PostgreSQL casts back exactly.
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


async def list_products(
    connection: asyncpg.Connection,
    codec: CursorCodec,
    *,
    filters: ProductFilters,
    sort: str | None,
    limit: int,
    cursor: str | None,
) -> bytes:
    """One page as a ready JSON document: `{"items": [...], "next_cursor": ...}`."""
    params = _Params()
    where = ["p.deleted_at IS NULL"]
    query_sql = ""
    if filters.q is not None:
        query_sql = SEARCH_QUERY.format(q=params.add(filters.q))
        where.append(f"p.search @@ {query_sql}")
    if filters.category_id is not None:
        where.append(
            "p.category_id IN (WITH RECURSIVE tree(id) AS ("
            f"SELECT id FROM categories WHERE id = {params.add(filters.category_id)} "
            "UNION ALL SELECT c.id FROM categories c JOIN tree ON c.parent_id = tree.id"
            ") SELECT id FROM tree)"
        )
    if filters.status is not None:
        where.append(f"p.status = {params.add(filters.status)}")
    if filters.min_price is not None:
        where.append(f"p.price >= {params.add(filters.min_price)}")
    if filters.max_price is not None:
        where.append(f"p.price <= {params.add(filters.max_price)}")
    if filters.in_stock is not None:
        where.append("p.stock > 0" if filters.in_stock else "p.stock = 0")
    if filters.tags:
        where.append(f"p.tags @> {params.add(filters.tags)}::text[]")

    sort_name = sort or (RANK if filters.q is not None else DEFAULT_SORT)
    column, cast, descending = _SORTS[sort_name]
    column = column.format(query=query_sql)
    if cursor is not None:
        last_value, last_id = _cursor_key(codec.decode(cursor, sort_name), cast)
        op = "<" if descending else ">"
        where.append(
            f"({column}, p.id) {op} ({params.add(last_value)}::{cast}, {params.add(last_id)})"
        )
    direction = "DESC" if descending else "ASC"
    sql = (
        f"SELECT {column} AS sort_value, p.id, {PRODUCT_JSON} FROM products p "
        f"WHERE {' AND '.join(where)} "
        f"ORDER BY {column} {direction}, p.id {direction} LIMIT {params.add(limit + 1)}"
    )
    rows = await connection.fetch(sql, *params.values)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = codec.encode(sort_name, [_cursor_value(last[0]), last[1]])
    return b"".join(
        (
            b'{"items":[',
            ",".join(row[2] for row in rows).encode(),
            b'],"next_cursor":',
            orjson.dumps(next_cursor),
            b"}",
        )
    )


_FROM_CURSOR: dict[str, Any] = {
    "bigint": int,
    "timestamptz": datetime.fromisoformat,
    "numeric": Decimal,
    "real": float,
    "text": str,
}


def _cursor_key(values: list[Any], cast: str) -> tuple[Any, int]:
    try:
        raw_value, last_id = values
        if not isinstance(last_id, int) or isinstance(raw_value, (list, dict, bool)):
            raise TypeError
        return _FROM_CURSOR[cast](raw_value), last_id
    except (TypeError, ValueError, ArithmeticError):
        raise Unprocessable("The cursor is invalid", loc=["query", "cursor"]) from None


class ProductQueries:
    """The read path as one object per app: opens a pooled connection per call."""

    def __init__(self, engine: AsyncEngine, codec: CursorCodec) -> None:
        self.engine = engine
        self.codec = codec

    async def get(self, product_id: int) -> ProductRow:
        async with read_connection(self.engine) as connection:
            return await get_product(connection, product_id)

    async def page(
        self, *, filters: ProductFilters, sort: str | None, limit: int, cursor: str | None
    ) -> bytes:
        async with read_connection(self.engine) as connection:
            return await list_products(
                connection, self.codec, filters=filters, sort=sort, limit=limit, cursor=cursor
            )
