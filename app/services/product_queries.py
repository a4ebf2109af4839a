"""Product reads on the hot path: raw asyncpg, JSON built by PostgreSQL.

The ORM is the right tool for writes; for reads it costs several times the query itself. Here
PostgreSQL renders the same JSON `ProductRead` would (app.services.product_columns builds it
from the schema; the API tests compare the two), so Python only joins strings. A product, and
an unfiltered page, is one round trip. A listing is built in app.services.listing: its SQL
(sql), keyset pages that keep a filtered page off bad plans (keyset) and ranked search
(ranked_search). bench/explain_listing.py shows the plans and timings of every shape on a
million products.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.errors import ProductNotFound
from app.db.session import run_read
from app.services.listing.keyset import keyset_page
from app.services.listing.ranked_search import BEYOND_WINDOW as BEYOND_WINDOW
from app.services.listing.ranked_search import RANKED as RANKED
from app.services.listing.ranked_search import ranked_page
from app.services.listing.sql import DEFAULT_SORT as DEFAULT_SORT
from app.services.listing.sql import ProductFilters as ProductFilters
from app.services.listing.sql import SortKey as SortKey
from app.services.listing.sql import page_document
from app.services.pagination import CursorCodec
from app.services.product_columns import PRODUCT_JSON as PRODUCT_JSON


@dataclass(slots=True)
class ProductRow:
    version: int
    json: str


async def get_product(connection: asyncpg.Connection, product_id: int) -> ProductRow:
    row = await connection.fetchrow(
        f"SELECT p.version, {PRODUCT_JSON} FROM products p "
        "WHERE p.id = $1 AND p.deleted_at IS NULL",
        product_id,
    )
    if row is None:
        raise ProductNotFound(f"Product {product_id} does not exist")
    return ProductRow(version=row[0], json=row[1])


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
            return page_document([], None)  # no such category
    if sort is None and filters.q is not None:
        return await ranked_page(
            connection, codec, filters, limit=limit, cursor=cursor, window=rank_window
        )
    return await keyset_page(
        connection, codec, filters, sort=sort or DEFAULT_SORT, limit=limit, cursor=cursor
    )


async def _category_tree(connection: asyncpg.Connection, filters: ProductFilters) -> list[int]:
    ids: list[int] | None = await connection.fetchval(
        "WITH RECURSIVE tree(id) AS ("
        "SELECT id FROM categories WHERE id = $1 "
        "UNION ALL SELECT c.id FROM categories c JOIN tree ON c.parent_id = tree.id"
        ") SELECT array_agg(id) FROM tree",
        filters.category_id,
    )
    return ids or []


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
