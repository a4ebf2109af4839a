"""Keyset pages in a sort order, and the walk that keeps a filtered page off bad plans.

A page with words or tags must not depend on the planner guessing how many products match:
for a word or tag it has no statistics on it guesses 0.5%, walks an index in sort order, and
reads the whole table when nothing matches (3 s on a million products). So such a page walks
the sort order for a bounded number of rows first and, when that does not fill it, collects
the matches through their own indexes instead (`sorted_rows`). A page filtered only on
category, status, stock and price is the planner's to choose: both ways are index-only there
(migration 0003) and its statistics on those columns are good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import orjson

from app.models.product import LISTING_FILTERS
from app.services.listing import cursors
from app.services.listing.sql import (
    SORTS,
    Params,
    ProductFilters,
    Query,
    conditions,
    indexed,
    live,
    order,
    page_document,
)
from app.services.pagination import CursorCodec
from app.services.product_columns import PRODUCT_JSON

# Rows of the sort order a filtered list walks first, and at most (see sorted_rows).
PROBE_ROWS = 1_000
MAX_PROBE_ROWS = 20_000
# How much further the walk looks when it found nothing but many products match.
FURTHER = 8
# The rows of the sort order a search whose matches lie beyond its walks collects first.
WINDOW_ROWS = 100_000
# A search walks on while that reads fewer rows than this many per match expected (a match
# collected costs more than a row walked: the words' index is read too).
COLLECT_OVER_WALK = 2
# In id order a walk reads the table about in the order it is stored: cheaper per row.
ID_ORDER_CHEAPER = 3
# How much shorter the first walk of a search with indexed conditions is.
SEARCH_IN_CATEGORY_SHORTER = 4
# A walk that reads only the sort index (no search words to test) costs a tenth per row.
INDEX_ONLY_FACTOR = 5


@dataclass(frozen=True, slots=True)
class Walk:
    """How far a filtered list walks its sort order before collecting the matches by index.

    `budget` rows first and at most `max_budget` (None: PROBE_ROWS and MAX_PROBE_ROWS), over
    ids from `min_id` on; with `enabled` False the matches are collected at once.
    """

    budget: int | None = None
    max_budget: int | None = None
    min_id: int | None = None
    enabled: bool = True


async def sorted_rows(
    connection: asyncpg.Connection,
    filters: ProductFilters,
    sort: str,
    *,
    after: tuple[Any, int] | None = None,
    limit: int | None,
    output: Literal["json", "rank"] = "json",
    walk: Walk | None = None,
) -> list[asyncpg.Record]:
    """Rows (sort value, id, JSON or rank) in `sort` order after the key `after`; `limit`
    None means all.

    With filters, the planner may walk the sort's index and test each row, which is fastest
    when many rows match, and reads the whole table when none do: its estimate for a word or
    tag it has no statistics on, or for a category's products, can be far off. So the walk
    gets a budget of rows. If it fills the page, or reaches the end, that is the answer. If
    it found some matches, the share it saw tells how far a walk that fills the page goes;
    within the walk's `max_budget` it walks again that far. Otherwise few rows match, and
    collecting all the matches first (through their indexes) is the cheaper way.
    """
    walk = walk or Walk()
    factor = 1 if filters.q is not None else INDEX_ONLY_FACTOR
    budget = (walk.budget or PROBE_ROWS) * factor
    max_budget = (walk.max_budget or MAX_PROBE_ROWS) * factor
    min_id = walk.min_id
    column = SORTS[sort][0]
    query = conditions(filters)
    out = PRODUCT_JSON if output == "json" else query.rank
    keyset = live(sort, after, query.params, filters, min_id)
    # Limits are written into the SQL, not passed as parameters, so that even a generic plan
    # knows them: for `LIMIT $n` PostgreSQL plans as if a tenth of the table were wanted.
    limit_sql = "ALL" if limit is None else str(int(limit))
    if not query.where:
        sql = (
            f"SELECT {column}, p.id, {out} FROM products p WHERE {keyset} "
            f"ORDER BY {order(sort)} LIMIT {limit_sql}"
        )
        return await _fetch(connection, sql, query.params)
    filtered = " AND ".join(query.where)
    if walk.enabled and filters.q is None and not filters.tags:
        # Every filter column is in the sort indexes and the category's covering index, so
        # both ways are index-only, and the planner's estimates (category, status, stock and
        # price have statistics) are good enough to choose between them, with these values.
        page = (
            f"WITH page AS MATERIALIZED ("
            f"SELECT p.id, {column} AS sort_value FROM products p WHERE {keyset} AND {filtered} "
            f"ORDER BY {order(sort)} LIMIT {limit_sql}"
            f") {_page_rows(sort, out)}"
        )
        statement = await connection.prepare(page)
        found: list[asyncpg.Record] = await statement.fetch(*query.params.values)
        return found
    collected = _matches(column, keyset, query)
    looked_further = False
    # Products that pass the indexed conditions (the planner's estimate, good for those).
    passing: float | None = None
    if query.rank is not None and query.indexed:
        # Each row of this walk is read from the table: a shorter first look tells the
        # share that matches there (the planner cannot: a category's own words match far
        # more of its products than of others', and it takes them as independent).
        budget = max(budget // SEARCH_IN_CATEGORY_SHORTER, 1)
    while walk.enabled:
        probe = _probe(column, out, keyset, sort, budget, filtered, limit_sql, query)
        if query.indexed:
            # Planned with the values: the walk's conditions on the category (a list of
            # ids) are the planner's to judge, and a generic plan would guess them.
            statement = await connection.prepare(probe)
            rows = await statement.fetch(*query.params.values)
        else:
            rows = await _fetch(connection, probe, query.params)
        if len(rows) == limit or await _walked_to_the_end(
            connection, filters, sort, after, min_id, budget
        ):
            return rows
        if limit is None or budget >= max_budget:
            break
        if not rows:
            # Nothing in the walk, yet matches may cluster further along the sort order (a
            # material's products sorted by name). Where collecting them all would read
            # more rows than walking on, look once more, further.
            if looked_further or await _estimated_rows(connection, collected, query) < (max_budget):
                break
            looked_further = True
            budget = min(max_budget, budget * FURTHER)
            continue
        needed = budget * limit // len(rows) * 3 // 2
        if needed > max_budget:
            break
        if query.rank is not None:
            # A search: each walked row is read from the table to test the words, as each
            # match is when collecting them. The share the walk saw tells how many match
            # (of the products in the category, status, stock and price asked for, as the
            # planner counts them); walk on only if that reads fewer.
            if passing is None:
                passing, _ = await _estimated_split(connection, keyset, query, collected)
            ratio = COLLECT_OVER_WALK * (ID_ORDER_CHEAPER if column == "p.id" else 1)
            if needed > ratio * passing * len(rows) / budget:
                break
        budget = max(needed, budget * 2)
    if looked_further and limit is not None:
        # Many match, and two walks found none: they lie further along (an adjective's
        # products sorted by name start 57,000 rows in). Collecting all of them reads each
        # from the table; a window of the sort order, combined with the words' index, reads
        # only those in the window.
        upto = await _window_end(connection, filters, sort, after, min_id)
        if upto is not None:
            rows = await _collected(connection, filters, sort, after, min_id, limit, out, upto)
            if len(rows) == limit:
                return rows
            after = upto
            rest = await _collected(
                connection, filters, sort, after, min_id, limit - len(rows), out
            )
            return [*rows, *rest]
    return await _collected(connection, filters, sort, after, min_id, limit, out)


async def _collected(
    connection: asyncpg.Connection,
    filters: ProductFilters,
    sort: str,
    after: tuple[Any, int] | None,
    min_id: int | None,
    limit: int | None,
    out: str | None,
    upto: tuple[Any, int] | None = None,
) -> list[asyncpg.Record]:
    """All the matches after `after` (up to and with the key `upto`), collected through their
    indexes, then the first `limit` in sort order."""
    column, cast, descending = SORTS[sort]
    query = conditions(filters)
    keyset = live(sort, after, query.params, filters, min_id)
    if upto is not None:
        op = ">=" if descending else "<="
        params = query.params
        keyset += (
            f" AND ({column}, p.id) {op} ({params.add(upto[0])}::{cast}, {params.add(upto[1])})"
        )
    collected = _matches(column, keyset, query)
    limit_sql = "ALL" if limit is None else str(int(limit))
    matches = (
        f"WITH matches AS MATERIALIZED ({collected}), page AS ("
        f"SELECT * FROM matches ORDER BY {order(sort, 'sort_value', 'id')} LIMIT {limit_sql}"
        f") {_page_rows(sort, out or 'NULL')}"
    )
    # How to collect the matches is the planner's to choose, from these values: a statement
    # prepared afresh is planned with them, where a cached one may get a generic plan.
    statement = await connection.prepare(matches)
    rows: list[asyncpg.Record] = await statement.fetch(*query.params.values)
    return rows


async def _window_end(
    connection: asyncpg.Connection,
    filters: ProductFilters,
    sort: str,
    after: tuple[Any, int] | None,
    min_id: int | None,
) -> tuple[Any, int] | None:
    """The key WINDOW_ROWS live products after `after` (None: fewer follow), index-only."""
    params = Params()
    keyset = live(sort, after, params, filters, min_id)
    rows = await connection.fetch(
        f"SELECT {SORTS[sort][0]}, p.id FROM products p WHERE {keyset} "
        f"ORDER BY {order(sort)} OFFSET {int(WINDOW_ROWS) - 1} LIMIT 1",
        *params.values,
    )
    return (rows[0][0], rows[0][1]) if rows else None


def _matches(column: str, keyset: str, query: Query) -> str:
    """Every match past `keyset` as (id, sort_value), one way of matching after the other,
    each excluding the earlier ones' matches (UNION ALL, nothing to deduplicate)."""
    return " UNION ALL ".join(
        f"SELECT p.id, {column} AS sort_value FROM products p WHERE {keyset} AND {condition}"
        for condition in query.each_match()
    )


def _page_rows(sort: str, out: str | None) -> str:
    """The rows of the CTE `page` (ids and sort values), with `out` read from each product."""
    return (
        f"SELECT m.sort_value, m.id, {out} FROM page m JOIN products p ON p.id = m.id "
        f"ORDER BY {order(sort, 'm.sort_value', 'm.id')}"
    )


def _probe(
    column: str,
    out: str | None,
    keyset: str,
    sort: str,
    budget: int,
    filtered: str,
    limit_sql: str,
    query: Query,
) -> str:
    """The walk of `budget` rows in sort order, keeping those that pass `filtered`.

    The walk is over the rows that pass the conditions the sort indexes hold (category,
    status, price, stock), tested on the index alone: only the rows that pass are read from
    the table, to test the words. Tags are in the index too but stay outside the walk's
    budget: PostgreSQL's guess for a tag it has no statistics on can be far off.
    """
    where = " AND ".join([keyset, *query.indexed])
    walked = f"FROM products p WHERE {where} ORDER BY {order(sort)} LIMIT {int(budget)}"
    if query.rank is not None and not query.indexed:
        # The words are tested on the table's rows, which the walk reads anyway.
        return (
            f"SELECT {column}, p.id, {out} FROM (SELECT * {walked}) p "
            f"WHERE {filtered} ORDER BY {order(sort)} LIMIT {limit_sql}"
        )
    # An index-only walk; the table is read for the rows that pass it (words to test) or
    # for the page's rows (no words).
    columns = ", ".join(dict.fromkeys(["p.id", column, *(f"p.{c}" for c in LISTING_FILTERS)]))
    walk = f"SELECT {columns} {walked}"
    if query.rank is not None:
        # Each walked row is looked up by id (OFFSET 0 keeps the lookup per row): left to
        # join as it likes, the planner may start from the words' matches instead, all of
        # them, when it thinks them few (for "water bottle" it expects 556, and 14,514 match).
        found = f"SELECT p.* FROM products p WHERE p.id = w.id AND {filtered} OFFSET 0"
        return (
            f"SELECT w.{column[2:]}, w.id, {out} FROM ({walk}) w, LATERAL ({found}) p "
            f"ORDER BY {order(sort, 'w.' + column[2:], 'w.id')} LIMIT {limit_sql}"
        )
    return (
        f"WITH page AS MATERIALIZED (SELECT p.id, {column} AS sort_value FROM ({walk}) p "
        f"WHERE {filtered} ORDER BY {order(sort)} LIMIT {limit_sql}) {_page_rows(sort, out)}"
    )


async def _estimated_split(
    connection: asyncpg.Connection, keyset: str, query: Query, collected: str
) -> tuple[float, float]:
    """The planner's estimates of the products that pass the indexed conditions, and of
    those that match all of them (`collected`), in one round trip."""
    indexed = " AND ".join([keyset, *query.indexed])
    sql = f"SELECT p.id, NULL FROM products p WHERE {indexed} UNION ALL {collected}"
    explained = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *query.params.values)
    plan = (orjson.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    first, *rest = plan["Plans"]
    return first["Plan Rows"], sum(branch["Plan Rows"] for branch in rest)


async def _estimated_rows(connection: asyncpg.Connection, sql: str, query: Query) -> float:
    """The planner's estimate of the rows `sql` returns, with these values."""
    explained = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *query.params.values)
    plan = orjson.loads(explained) if isinstance(explained, str) else explained
    rows: float = plan[0]["Plan"]["Plan Rows"]
    return rows


async def _walked_to_the_end(
    connection: asyncpg.Connection,
    filters: ProductFilters,
    sort: str,
    after: tuple[Any, int] | None,
    min_id: int | None,
    budget: int,
) -> bool:
    """Whether fewer than `budget` live products that pass the indexed conditions follow
    `after`: a probe saw them all."""
    params = Params()
    keyset = live(sort, after, params, filters, min_id)
    by_index = indexed(filters, params)
    sql = (
        f"SELECT count(*) FROM (SELECT FROM products p WHERE {' AND '.join([keyset, *by_index])} "
        f"ORDER BY {order(sort)} LIMIT {int(budget)}) walked"
    )
    if by_index:
        statement = await connection.prepare(sql)  # as the probe: planned with the values
        walked: int = await statement.fetchval(*params.values)
    else:
        walked = await connection.fetchval(sql, *params.values)
    return walked < budget


async def _fetch(connection: asyncpg.Connection, sql: str, params: Params) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(sql, *params.values)
    return rows


async def keyset_page(
    connection: asyncpg.Connection,
    codec: CursorCodec,
    filters: ProductFilters,
    *,
    sort: str,
    limit: int,
    cursor: str | None,
) -> bytes:
    """A page in `sort` order, after the cursor's key, as a ready JSON document."""
    after = None
    if cursor is not None:
        after = cursors.key(codec.decode(cursor, sort), SORTS[sort][1])
    rows = await sorted_rows(connection, filters, sort, after=after, limit=limit + 1)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = codec.encode(sort, [cursors.cursor_value(rows[-1][0]), rows[-1][1]])
    return page_document([row[2] for row in rows], next_cursor)
