"""Product reads on the hot path: raw asyncpg, JSON built by PostgreSQL.

The ORM is the right tool for writes; for reads it costs several times the query itself. Here
PostgreSQL renders the same JSON `ProductRead` would (the API tests compare the two), so
Python only joins strings. A product, and an unfiltered page, is one round trip.

A filtered page must not depend on the planner guessing how many products match: for a word
or tag it has no statistics on it guesses 0.5%, walks an index in sort order, and reads the
whole table when nothing matches (3 s on a million products). So a filtered page walks the
sort order for a bounded number of rows first and, when that does not fill it, collects the
matches through their own indexes instead (`_sorted_rows`). Search ranks only the most
recently added matches (`_ranked_page`). bench/explain_listing.py shows the plans and timings
of every shape on a million products.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.errors import ProductNotFound, Unprocessable
from app.db.session import run_read
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
# Rows of the sort order a filtered list walks first, and at most (see _sorted_rows); a
# ranked search walks these many rows per product of its window.
PROBE_ROWS = 1_000
MAX_PROBE_ROWS = 20_000
RANK_PROBE_ROWS_PER_PRODUCT = 10
RANK_MAX_PROBE_ROWS_PER_PRODUCT = 250


@dataclass(slots=True)
class ProductFilters:
    q: str | None = None
    category_id: int | None = None
    status: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None
    tags: list[str] = field(default_factory=list)
    # category_id and its descendants, looked up before the products are: a list of ids
    # gives the planner statistics to go on, where a recursive query inside gives none.
    category_ids: list[int] | None = None


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
    """One statement's parameters and filter conditions, and a row's relevance if searching."""

    params: _Params
    where: list[str]  # on live products: `deleted_at IS NULL` is not among them
    rank: str | None  # SQL for a row's relevance; None without q


def _conditions(filters: ProductFilters) -> _Query:
    params = _Params()
    where: list[str] = []
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
        if filters.category_ids is None:
            raise ValueError("category_ids must be looked up first (_with_category_tree)")
        where.append(f"p.category_id = ANY({params.add(filters.category_ids)}::bigint[])")
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


def _live(
    sort: str,
    after: tuple[Any, int] | None,
    params: _Params,
    filters: ProductFilters,
    min_id: int | None = None,
) -> str:
    """Live products past the keyset `after` in `sort` order (and from `min_id` on).

    A price range is part of it when sorting by price: the walk then starts and ends where
    the range does, rather than testing every row below it.
    """
    live = "p.deleted_at IS NULL"
    if min_id is not None:
        live += f" AND p.id >= {params.add(min_id)}"
    if sort.lstrip("-") == "price":
        if filters.min_price is not None:
            live += f" AND p.price >= {params.add(filters.min_price)}"
        if filters.max_price is not None:
            live += f" AND p.price <= {params.add(filters.max_price)}"
    if after is not None:
        column, cast, descending = _SORTS[sort]
        op = "<" if descending else ">"
        live += (
            f" AND ({column}, p.id) {op} ({params.add(after[0])}::{cast}, {params.add(after[1])})"
        )
    return live


def _order(sort: str, column: str | None = None, id_column: str = "p.id") -> str:
    sort_column, _, descending = _SORTS[sort]
    direction = "DESC" if descending else "ASC"
    return f"{column or sort_column} {direction}, {id_column} {direction}"


async def _sorted_rows(
    connection: asyncpg.Connection,
    filters: ProductFilters,
    sort: str,
    *,
    after: tuple[Any, int] | None = None,
    limit: int | None,
    output: Literal["json", "rank"] = "json",
    budget: int | None = None,
    max_budget: int | None = None,
    min_id: int | None = None,
    walk: bool = True,
) -> list[asyncpg.Record]:
    """Rows (sort value, id, JSON or rank) in `sort` order after the key `after`; `limit`
    None means all.

    With filters, the planner may walk the sort's index and test each row, which is fastest
    when many rows match, and reads the whole table when none do: its estimate for a word or
    tag it has no statistics on, or for a category's products, can be far off. So the walk
    gets a budget of rows. If it fills the page, or reaches the end, that is the answer. If
    it found some matches, the share it saw tells how far a walk that fills the page goes;
    within `max_budget` it walks again that far. Otherwise few rows match, and collecting
    all the matches first (through their indexes) is the cheaper way.
    """
    budget = budget or PROBE_ROWS
    max_budget = max_budget or MAX_PROBE_ROWS
    column = _SORTS[sort][0]
    query = _conditions(filters)
    out = PRODUCT_JSON if output == "json" else query.rank
    live = _live(sort, after, query.params, filters, min_id)
    # Limits are written into the SQL, not passed as parameters, so that even a generic plan
    # knows them: for `LIMIT $n` PostgreSQL plans as if a tenth of the table were wanted.
    limit_sql = "ALL" if limit is None else str(int(limit))
    if not query.where:
        sql = (
            f"SELECT {column}, p.id, {out} FROM products p WHERE {live} "
            f"ORDER BY {_order(sort)} LIMIT {limit_sql}"
        )
        return await _fetch(connection, sql, query.params)
    filtered = " AND ".join(query.where)
    while walk:
        probe = (
            f"SELECT {column}, p.id, {out} FROM ("
            f"SELECT * FROM products p WHERE {live} ORDER BY {_order(sort)} LIMIT {int(budget)}"
            f") p WHERE {filtered} ORDER BY {_order(sort)} LIMIT {limit_sql}"
        )
        rows = await _fetch(connection, probe, query.params)
        if len(rows) == limit or await _walked_to_the_end(
            connection, filters, sort, after, min_id, budget
        ):
            return rows
        if limit is None or not rows:
            break
        needed = budget * limit // len(rows) * 3 // 2
        if needed > max_budget or budget >= max_budget:
            break
        budget = max(needed, budget * 2)
    matches = (
        f"WITH matches AS MATERIALIZED ("
        f"SELECT p.id, {column} AS sort_value FROM products p WHERE {live} AND {filtered}"
        f"), page AS ("
        f"SELECT * FROM matches ORDER BY {_order(sort, 'sort_value', 'id')} LIMIT {limit_sql}"
        f") SELECT m.sort_value, m.id, {out} FROM page m JOIN products p ON p.id = m.id "
        f"ORDER BY {_order(sort, 'm.sort_value', 'm.id')}"
    )
    # How to collect the matches is the planner's to choose, from these values: a statement
    # prepared afresh is planned with them, where a cached one may get a generic plan.
    statement = await connection.prepare(matches)
    rows = await statement.fetch(*query.params.values)
    return rows


async def _walked_to_the_end(
    connection: asyncpg.Connection,
    filters: ProductFilters,
    sort: str,
    after: tuple[Any, int] | None,
    min_id: int | None,
    budget: int,
) -> bool:
    """Whether fewer than `budget` live products follow `after`: a probe saw them all."""
    params = _Params()
    live = _live(sort, after, params, filters, min_id)
    walked: int = await connection.fetchval(
        f"SELECT count(*) FROM (SELECT FROM products p WHERE {live} "
        f"ORDER BY {_order(sort)} LIMIT {int(budget)}) walked",
        *params.values,
    )
    return walked < budget


async def _fetch(connection: asyncpg.Connection, sql: str, params: _Params) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(sql, *params.values)
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
    if filters.category_id is not None:
        filters = replace(filters, category_ids=await _category_tree(connection, filters))
        if not filters.category_ids:
            return _page([], None)  # no such category
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


async def _category_tree(connection: asyncpg.Connection, filters: ProductFilters) -> list[int]:
    ids: list[int] | None = await connection.fetchval(
        "WITH RECURSIVE tree(id) AS ("
        "SELECT id FROM categories WHERE id = $1 "
        "UNION ALL SELECT c.id FROM categories c JOIN tree ON c.parent_id = tree.id"
        ") SELECT array_agg(id) FROM tree",
        filters.category_id,
    )
    return ids or []


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

    budget = window * RANK_PROBE_ROWS_PER_PRODUCT
    max_budget = window * RANK_MAX_PROBE_ROWS_PER_PRODUCT
    if cursor is None:
        newest = await _sorted_rows(
            connection,
            filters,
            "-id",
            limit=window + 1,
            output="rank",
            budget=budget,
            max_budget=max_budget,
        )
        if len(newest) > window:
            newest = newest[:window]
            bound = newest[-1][1]
    else:
        # Later pages: the window is what page 1 saw, every match down to its bound (or all
        # of them, then few). A walk stops at the bound, so it is the way when the window
        # spans few ids (a common word); a rare word's window can span most of the table.
        walk = False
        if bound is not None:
            newest_id = await connection.fetchval("SELECT max(id) FROM products")
            walk = newest_id is not None and newest_id - bound < max_budget
        newest = await _sorted_rows(
            connection,
            filters,
            "-id",
            limit=None,
            output="rank",
            budget=max_budget,
            min_id=bound,
            walk=walk,
        )
    ranked = sorted(((row[2], row[1]) for row in newest), reverse=True)
    if after is not None:
        ranked = [key for key in ranked if key < after]
    page = ranked[: limit + 1]
    items = await _product_json(connection, [product_id for _, product_id in page[:limit]])
    if len(page) > limit:
        rank, last_id = page[limit - 1]
        return _page(items, codec.encode(RANKED, [rank, bound, last_id]))
    if bound is None:
        return _page(items, None)
    # The window is used up: go on with the older matches.
    return await _beyond_window_page(connection, codec, filters, bound, items, limit)


async def _product_json(connection: asyncpg.Connection, ids: list[int]) -> list[str]:
    """The JSON of live products `ids`, in that order."""
    if not ids:
        return []
    rows = await connection.fetch(
        f"SELECT p.id, {PRODUCT_JSON} FROM products p "
        "WHERE p.id = ANY($1::bigint[]) AND p.deleted_at IS NULL",
        ids,
    )
    by_id = {row[0]: row[1] for row in rows}
    return [by_id[product_id] for product_id in ids if product_id in by_id]


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
        return await run_read(self.engine, lambda connection: get_product(connection, product_id))

    async def page(
        self, *, filters: ProductFilters, sort: str | None, limit: int, cursor: str | None
    ) -> bytes:
        return await run_read(
            self.engine,
            lambda connection: list_products(
                connection,
                self.codec,
                filters=filters,
                sort=sort,
                limit=limit,
                cursor=cursor,
                rank_window=self.rank_window,
            ),
        )
