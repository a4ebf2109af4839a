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
from app.models.product import SEARCH_CONFIG
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
DEFAULT_SORT = "-created_at"

# sort -> (column, its cursor type cast, descending)
_SORTS: dict[str, tuple[str, str, bool]] = {
    "id": ("p.id", "bigint", False),
    "-id": ("p.id", "bigint", True),
    "created_at": ("p.created_at", "timestamptz", False),
    "-created_at": ("p.created_at", "timestamptz", True),
    "price": ("p.price", "numeric", False),
    "-price": ("p.price", "numeric", True),
    "name": ("p.name", "text", False),
    "-name": ("p.name", "text", True),
}
# A search without a sort is ranked; its cursors carry one of these names (see _ranked_page).
RANKED = "rank"
BEYOND_WINDOW = "rank:beyond-window"
SKU_PREFIX_MIN_LENGTH = 3


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


def _like_prefix(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


@dataclass(slots=True)
class _Query:
    """The WHERE clause of one statement, and the relevance of a row when searching."""

    params: _Params
    where: list[str]
    rank: str | None  # SQL for a row's relevance; None without q


def _conditions(filters: ProductFilters) -> _Query:
    params = _Params()
    where = ["p.deleted_at IS NULL"]
    rank = None
    if filters.q is not None:
        tsquery = f"websearch_to_tsquery('{SEARCH_CONFIG}', {params.add(filters.q)})"
        match = f"p.search @@ {tsquery}"
        rank = f"ts_rank(p.search, {tsquery})::real"
        if len(filters.q) >= SKU_PREFIX_MIN_LENGTH and not any(c.isspace() for c in filters.q):
            # One word may be the start of a SKU: such products rank above any text match.
            sku_prefix = f"lower(p.sku) LIKE {params.add(_like_prefix(filters.q))}"
            match = f"({match} OR {sku_prefix})"
            rank = f"({rank} + ({sku_prefix})::int)::real"
        where.append(match)
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
    return _Query(params, where, rank)


def _cursor_value(value: Any) -> Any:
    # JSON-safe forms that PostgreSQL casts back exactly.
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


_FROM_CURSOR: dict[str, Any] = {
    "bigint": int,
    "timestamptz": datetime.fromisoformat,
    "numeric": Decimal,
    "real": float,
    "text": str,
}


def _key(values: list[Any], *casts: str) -> tuple[Any, ...]:
    """A decoded cursor's values, typed; the last one is always a product id."""
    invalid = Unprocessable("The cursor is invalid", loc=["query", "cursor"])
    if len(values) != len(casts) + 1 or not isinstance(values[-1], int):
        raise invalid
    typed: list[Any] = []
    for raw, cast in zip(values, casts, strict=False):
        if raw is None:
            typed.append(None)
            continue
        if isinstance(raw, (list, dict, bool)):
            raise invalid
        try:
            typed.append(_FROM_CURSOR[cast](raw))
        except (TypeError, ValueError, ArithmeticError):
            raise invalid from None
    return (*typed, values[-1])


async def _sorted_rows(
    connection: asyncpg.Connection,
    filters: ProductFilters,
    sort: str,
    *,
    after: tuple[Any, int] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` rows (sort value, id, JSON) in `sort` order, after the key `after`."""
    query = _conditions(filters)
    column, cast, descending = _SORTS[sort]
    if after is not None:
        op = "<" if descending else ">"
        add = query.params.add
        query.where.append(f"({column}, p.id) {op} ({add(after[0])}::{cast}, {add(after[1])})")
    direction = "DESC" if descending else "ASC"
    sql = (
        f"SELECT {column}, p.id, {PRODUCT_JSON} FROM products p "
        f"WHERE {' AND '.join(query.where)} "
        f"ORDER BY {column} {direction}, p.id {direction} LIMIT {query.params.add(limit)}"
    )
    rows: list[asyncpg.Record] = await connection.fetch(sql, *query.params.values)
    return rows


def _page(rows: list[str], next_cursor: str | None) -> bytes:
    return b"".join(
        (
            b'{"items":[',
            ",".join(rows).encode(),
            b'],"next_cursor":',
            orjson.dumps(next_cursor),
            b"}",
        )
    )


async def list_products(
    connection: asyncpg.Connection,
    codec: CursorCodec,
    *,
    filters: ProductFilters,
    sort: str | None,
    limit: int,
    cursor: str | None,
    rank_window: int,
) -> bytes:
    """One page as a ready JSON document: `{"items": [...], "next_cursor": ...}`."""
    if sort is None and filters.q is not None:
        return await _ranked_page(
            connection, codec, filters, limit=limit, cursor=cursor, window=rank_window
        )
    sort = sort or DEFAULT_SORT
    after = None
    if cursor is not None:
        after = _key(codec.decode(cursor, sort), _SORTS[sort][1])
    rows = await _sorted_rows(connection, filters, sort, after=after, limit=limit + 1)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = codec.encode(sort, [_cursor_value(rows[-1][0]), rows[-1][1]])
    return _page([row[2] for row in rows], next_cursor)


async def _ranked_page(
    connection: asyncpg.Connection,
    codec: CursorCodec,
    filters: ProductFilters,
    *,
    limit: int,
    cursor: str | None,
    window: int,
) -> bytes:
    """A page of a search ranked by relevance.

    Ranking needs the rank of every candidate, and a common word matches a large share of the
    catalog, so the ranked candidates are the `window` most recently added matches (all of
    them when fewer match), found by walking the primary key backwards: ids follow insertion,
    so the walk reads the table in order. Those come first, best first; older matches follow,
    newest first. A cursor says which part it is in, and the window's oldest id (its bound)
    fixes which products are in the window, so paging never repeats or skips an older product.
    """
    bound: int | None = None
    after: tuple[float, int] | None = None
    if cursor is not None:
        part, key = codec.decode_any(cursor, (RANKED, BEYOND_WINDOW))
        if part == BEYOND_WINDOW:
            (last_id,) = _key(key)
            return await _beyond_window_page(connection, codec, filters, last_id, [], limit)
        rank, bound, last_id = _key(key, "real", "bigint")
        if rank is None:
            raise Unprocessable("The cursor is invalid", loc=["query", "cursor"])
        after = (rank, last_id)

    query = _conditions(filters)
    add = query.params.add
    if cursor is None:
        newest = f"ORDER BY p.id DESC LIMIT {add(window + 1)}"
        window_size = add(window)
    else:
        # Later pages: the window is what page 1 saw, every match down to its bound.
        newest, window_size = "", "ALL"
        if bound is not None:
            query.where.append(f"p.id >= {add(bound)}")
    keyset = ""
    if after is not None:
        keyset = f"WHERE (rank, id) < ({add(after[0])}::real, {add(after[1])})"
    sql = f"""
        WITH newest AS MATERIALIZED (
            SELECT p.id, {query.rank} AS rank FROM products p
            WHERE {" AND ".join(query.where)} {newest}
        ), ranked_window AS (
            SELECT * FROM newest ORDER BY id DESC LIMIT {window_size}
        ), bound AS (
            SELECT min(id) AS id, (SELECT count(*) FROM newest) > {add(window)} AS truncated
            FROM ranked_window
        ), page AS (
            SELECT * FROM ranked_window {keyset}
            ORDER BY rank DESC, id DESC LIMIT {add(limit + 1)}
        )
        SELECT w.rank, w.id, {PRODUCT_JSON}, b.truncated, b.id
        FROM page w JOIN products p ON p.id = w.id CROSS JOIN bound b
        ORDER BY w.rank DESC, w.id DESC
    """
    rows = await connection.fetch(sql, *query.params.values)
    if rows and cursor is None and rows[0][3]:
        bound = rows[0][4]
    items = [row[2] for row in rows[:limit]]
    if len(rows) > limit:
        last = rows[limit - 1]
        return _page(items, codec.encode(RANKED, [last[0], bound, last[1]]))
    if bound is None:
        return _page(items, None)
    # The window is used up: go on with the older matches.
    return await _beyond_window_page(connection, codec, filters, bound, items, limit)


async def _beyond_window_page(
    connection: asyncpg.Connection,
    codec: CursorCodec,
    filters: ProductFilters,
    before_id: int,
    items: list[str],
    limit: int,
) -> bytes:
    """Fill the page with matches added before `before_id`, newest first."""
    wanted = limit - len(items)
    after = (before_id, before_id)
    rows = await _sorted_rows(connection, filters, "-id", after=after, limit=wanted + 1)
    next_cursor = None
    if len(rows) > wanted:
        last_id = rows[wanted - 1][1] if wanted else before_id
        next_cursor = codec.encode(BEYOND_WINDOW, [last_id])
    return _page([*items, *(row[2] for row in rows[:wanted])], next_cursor)


class ProductQueries:
    """The read path as one object per app: opens a pooled connection per call."""

    def __init__(self, engine: AsyncEngine, codec: CursorCodec, *, rank_window: int) -> None:
        self.engine = engine
        self.codec = codec
        self.rank_window = rank_window

    async def get(self, product_id: int) -> ProductRow:
        async with read_connection(self.engine) as connection:
            return await get_product(connection, product_id)

    async def page(
        self, *, filters: ProductFilters, sort: str | None, limit: int, cursor: str | None
    ) -> bytes:
        async with read_connection(self.engine) as connection:
            return await list_products(
                connection,
                self.codec,
                filters=filters,
                sort=sort,
                limit=limit,
                cursor=cursor,
                rank_window=self.rank_window,
            )
