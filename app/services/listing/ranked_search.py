"""A search without a sort, ranked by relevance over a window of the newest matches."""

from __future__ import annotations

import asyncpg

from app.core.errors import Unprocessable
from app.services.listing import cursors
from app.services.listing.keyset import Walk, sorted_rows
from app.services.listing.sql import ProductFilters, page_document
from app.services.pagination import CursorCodec
from app.services.product_columns import PRODUCT_JSON

# A ranked search's cursors carry one of these names.
RANKED = "rank"
BEYOND_WINDOW = "rank:beyond-window"
# A ranked search walks these many rows per product of its window first, and at most.
RANK_PROBE_ROWS_PER_PRODUCT = 10
RANK_MAX_PROBE_ROWS_PER_PRODUCT = 250


async def ranked_page(
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
            (last_id,) = cursors.key(key)
            return await _beyond_window_page(connection, codec, filters, last_id, [], limit)
        rank, bound, last_id = cursors.key(key, "real", "bigint")
        if rank is None:
            raise Unprocessable("The cursor is invalid", loc=["query", "cursor"])
        after = (rank, last_id)

    budget = window * RANK_PROBE_ROWS_PER_PRODUCT
    max_budget = window * RANK_MAX_PROBE_ROWS_PER_PRODUCT
    if cursor is None:
        newest = await sorted_rows(
            connection,
            filters,
            "-id",
            limit=window + 1,
            output="rank",
            walk=Walk(budget=budget, max_budget=max_budget),
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
        newest = await sorted_rows(
            connection,
            filters,
            "-id",
            limit=None,
            output="rank",
            walk=Walk(budget=max_budget, min_id=bound, enabled=walk),
        )
    ranked = sorted(((row[2], row[1]) for row in newest), reverse=True)
    if after is not None:
        ranked = [key for key in ranked if key < after]
    page = ranked[: limit + 1]
    items = await _product_json(connection, [product_id for _, product_id in page[:limit]])
    if len(page) > limit:
        rank, last_id = page[limit - 1]
        return page_document(items, codec.encode(RANKED, [rank, bound, last_id]))
    if bound is None:
        return page_document(items, None)
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
    rows = await sorted_rows(connection, filters, "-id", after=after, limit=wanted + 1)
    next_cursor = None
    if len(rows) > wanted:
        last_id = rows[wanted - 1][1] if wanted else before_id
        next_cursor = codec.encode(BEYOND_WINDOW, [last_id])
    return page_document([*items, *(row[2] for row in rows[:wanted])], next_cursor)
