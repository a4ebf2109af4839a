"""SQL fragments of a product listing: filters, sort orders, keysets and the page document."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import orjson

from app.models.product import SEARCH_CONFIG

SortKey = Literal["id", "-id", "created_at", "-created_at", "price", "-price", "name", "-name"]
DEFAULT_SORT = "-created_at"

# sort -> (column, its cursor type cast, descending)
SORTS: dict[str, tuple[str, str, bool]] = {
    "id": ("p.id", "bigint", False),
    "-id": ("p.id", "bigint", True),
    "created_at": ("p.created_at", "timestamptz", False),
    "-created_at": ("p.created_at", "timestamptz", True),
    "price": ("p.price", "numeric", False),
    "-price": ("p.price", "numeric", True),
    "name": ("p.name", "text", False),
    "-name": ("p.name", "text", True),
}
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
    # category_id and its descendants, looked up before the products are: a list of ids
    # gives the planner statistics to go on, where a recursive query inside gives none.
    category_ids: list[int] | None = None


class Params:
    """Numbered query parameters ($1, $2, ...) gathered as the SQL is assembled."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _like_prefix(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


@dataclass(slots=True)
class Query:
    """One statement's parameters and filter conditions, and a row's relevance if searching."""

    params: Params
    where: list[str]  # on live products: `deleted_at IS NULL` is not among them
    rank: str | None  # SQL for a row's relevance; None without q
    # The search's match is where[0], and these are its OR-ed ways (words, SKU prefix).
    # Collected one by one, each can be combined with the other filters' indexes, which
    # PostgreSQL does not do for an OR inside an AND.
    matches: list[str] = field(default_factory=list)
    # Those of `where` that `indexed` gives.
    indexed: list[str] = field(default_factory=list)

    def each_match(self) -> list[str]:
        """The conditions once per way of matching the search (once if no search): each row
        that matches all of `where` matches exactly one of them (so UNION ALL needs no
        duplicates removed, which costs more than the collection for a common word)."""
        if len(self.matches) < 2:
            return [" AND ".join(self.where)]
        ways = []
        for number, match in enumerate(self.matches):
            earlier = [f"NOT ({other})" for other in self.matches[:number]]
            ways.append(" AND ".join([match, *earlier, *self.where[1:]]))
        return ways


def conditions(filters: ProductFilters) -> Query:
    params = Params()
    where: list[str] = []
    matches: list[str] = []
    rank = None
    if filters.q is not None:
        tsquery = f"websearch_to_tsquery('{SEARCH_CONFIG}', {params.add(filters.q)})"
        match = f"p.search @@ {tsquery}"
        matches.append(match)
        rank = f"ts_rank(p.search, {tsquery})::real"
        if len(filters.q) >= SKU_PREFIX_MIN_LENGTH and not any(c.isspace() for c in filters.q):
            # One word may be the start of a SKU: such products rank above any text match.
            sku_prefix = f"lower(p.sku) LIKE {params.add(_like_prefix(filters.q))}"
            matches.append(sku_prefix)
            match = f"({match} OR {sku_prefix})"
            rank = f"({rank} + ({sku_prefix})::int)::real"
        where.append(match)
    by_index = indexed(filters, params)
    where += by_index
    if filters.tags:
        where.append(f"p.tags @> {params.add(filters.tags)}::text[]")
    return Query(params, where, rank, matches, by_index)


def indexed(filters: ProductFilters, params: Params) -> list[str]:
    """The conditions on category, status, price and stock: columns every sort index holds
    (migration 0003) and PostgreSQL keeps good statistics on."""
    where = []
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
    return where


def live(
    sort: str,
    after: tuple[Any, int] | None,
    params: Params,
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
        column, cast, descending = SORTS[sort]
        op = "<" if descending else ">"
        live += (
            f" AND ({column}, p.id) {op} ({params.add(after[0])}::{cast}, {params.add(after[1])})"
        )
    return live


def order(sort: str, column: str | None = None, id_column: str = "p.id") -> str:
    sort_column, _, descending = SORTS[sort]
    direction = "DESC" if descending else "ASC"
    return f"{column or sort_column} {direction}, {id_column} {direction}"


def page_document(rows: list[str], next_cursor: str | None) -> bytes:
    """`{"items": [...], "next_cursor": ...}` from the items' JSON texts."""
    return b"".join(
        (
            b'{"items":[',
            ",".join(rows).encode(),
            b'],"next_cursor":',
            orjson.dumps(next_cursor),
            b"}",
        )
    )
