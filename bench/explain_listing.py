"""EXPLAIN (ANALYZE, BUFFERS) of every product-list query shape on a big catalog.

    .venv/bin/python -m bench.explain_listing [--products 1000000] [--database-url URL]
        [--query 'q=titanium&sort=name&limit=50' [--pages 3]]

Without --database-url it creates a throwaway database on 127.0.0.1:5432, seeds it with
`catalog seed`'s generator (COPY; a million products take a few minutes), vacuums and analyzes
it as autovacuum would, and drops it at the end. With --database-url it uses that catalog as
it is (nothing seeded, nothing dropped).

Each shape is run through `app.services.product_queries.list_products` itself, on a connection
that EXPLAINs the SQL the service sends before running it, so the plans are those of the real
queries. Prints one line per shape (plan time, wall time of the real query, the indexes used)
and exits 1 when any plan reads `products` with a sequential scan. With --query (an API query
string, repeatable) it prints instead each statement those lists send, with its text plan
(ANALYZE, BUFFERS), for the first page and `--pages` - 1 more by their cursors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import asyncpg

from app.core.config import Settings
from app.db import bootstrap
from app.db.engine import build_engine
from app.db.session import read_connection
from app.services import product_queries
from app.services.pagination import CursorCodec
from app.services.product_queries import ProductFilters
from app.services.seed import seed_catalog

CODEC = CursorCodec("explain-listing")
RANK_WINDOW = Settings.model_fields["search_rank_window"].default
SORTS = ("id", "-id", "created_at", "-created_at", "price", "-price", "name", "-name")


@dataclass
class Explained:
    sql: str
    plan: dict[str, Any]
    wall_ms: float
    text: str = ""  # the text plan, when asked for


class ExplainingConnection:
    """Stands in for the asyncpg connection: EXPLAINs each query, then runs it for real."""

    def __init__(
        self, connection: asyncpg.Connection, *, analyze: bool = True, text: bool = False
    ) -> None:
        self.connection = connection
        self.analyze = analyze
        self.text = text
        self.explained: list[Explained] = []

    async def prepare(self, sql: str) -> _Prepared:
        return _Prepared(self, sql)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        if sql.startswith("EXPLAIN"):  # the service's own look at a plan: run as it is
            explained: list[asyncpg.Record] = await self.connection.fetch(sql, *args)
            return explained
        options = "ANALYZE, BUFFERS, FORMAT JSON" if self.analyze else "FORMAT JSON"
        raw = await self.connection.fetchval(f"EXPLAIN ({options}) {sql}", *args)
        plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
        text = ""
        if self.text:
            lines = await self.connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
            text = "\n".join(line[0] for line in lines)
        started = time.perf_counter()
        rows: list[asyncpg.Record] = await self.connection.fetch(sql, *args)
        wall_ms = (time.perf_counter() - started) * 1000
        self.explained.append(Explained(sql, plan, wall_ms, text))
        return rows


@dataclass
class _Prepared:
    """What `connection.prepare` gives: here, a statement explained when it is run."""

    connection: ExplainingConnection
    sql: str

    async def fetch(self, *args: Any) -> list[asyncpg.Record]:
        return await self.connection.fetch(self.sql, *args)

    async def fetchval(self, *args: Any) -> Any:
        return await self.connection.fetchval(self.sql, *args)


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)


def seq_scans_on_products(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        node
        for node in plan_nodes(plan["Plan"])
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "products"
    ]


def indexes_used(plan: dict[str, Any]) -> list[str]:
    names = [node["Index Name"] for node in plan_nodes(plan["Plan"]) if "Index Name" in node]
    return list(dict.fromkeys(names))


@dataclass
class Shape:
    label: str
    filters: ProductFilters = field(default_factory=ProductFilters)
    sort: str | None = None
    cursor: str | None = None
    second_page: bool = False  # list page 1, then EXPLAIN page 2 with its cursor


async def list_page(
    connection: Any, shape: Shape, limit: int = 20, cursor: str | None = None
) -> dict[str, Any]:
    body = await product_queries.list_products(
        connection,
        CODEC,
        filters=shape.filters,
        sort=shape.sort,
        limit=limit,
        cursor=cursor if cursor is not None else shape.cursor,
        rank_window=RANK_WINDOW,
    )
    page: dict[str, Any] = json.loads(body)
    return page


async def explain_shape(connection: asyncpg.Connection, shape: Shape) -> Explained:
    cursor = None
    if shape.second_page:
        cursor = (await list_page(connection, shape))["next_cursor"]
        if cursor is None:
            raise RuntimeError(f"{shape.label}: the first page is the last; no cursor to follow")
    explaining = ExplainingConnection(connection)
    await list_page(explaining, shape, cursor=cursor)
    if len(explaining.explained) == 1:
        return explaining.explained[0]
    # A filtered page whose probe fell short, or a ranked page, takes more than one statement.
    return Explained(
        "\n".join(e.sql for e in explaining.explained),
        {
            "Plan": {
                "Node Type": "Statements",
                "Plans": [e.plan["Plan"] for e in explaining.explained],
            },
            "Execution Time": sum(e.plan["Execution Time"] for e in explaining.explained),
        },
        sum(e.wall_ms for e in explaining.explained),
    )


async def deep_cursor(connection: asyncpg.Connection, sort: str, offset: int) -> str:
    """The cursor a client holds after paging `offset` rows into `sort` (found with OFFSET)."""
    column = sort.lstrip("-")
    direction = "DESC" if sort.startswith("-") else "ASC"
    row = await connection.fetchrow(
        f"SELECT {column}, id FROM products WHERE deleted_at IS NULL "
        f"ORDER BY {column} {direction}, id {direction} OFFSET $1 LIMIT 1",
        offset,
    )
    if row is None:
        raise RuntimeError(f"fewer than {offset} products")
    value = row[0]
    value = str(value) if isinstance(value, Decimal) else value
    value = value.isoformat() if hasattr(value, "isoformat") else value
    return CODEC.encode(sort, [value, row[1]])


async def category_ids(connection: asyncpg.Connection) -> tuple[int, int]:
    """A parent category with children, and a leaf: the busiest of each."""
    parent = await connection.fetchval(
        "SELECT c.id FROM categories c WHERE EXISTS "
        "(SELECT 1 FROM categories k WHERE k.parent_id = c.id) ORDER BY c.id LIMIT 1"
    )
    leaf = await connection.fetchval(
        "SELECT c.id FROM categories c WHERE NOT EXISTS "
        "(SELECT 1 FROM categories k WHERE k.parent_id = c.id) ORDER BY c.id LIMIT 1"
    )
    if parent is None or leaf is None:
        raise RuntimeError("the catalog has no category tree; seed it with `catalog seed`")
    return parent, leaf


async def all_shapes(connection: asyncpg.Connection, products: int) -> list[Shape]:
    parent, leaf = await category_ids(connection)
    sku = await connection.fetchval(
        "SELECT sku FROM products ORDER BY id LIMIT 1 OFFSET $1", products // 2
    )
    deep = max(products // 2, 1)
    shapes = [Shape("default sort (-created_at)")]
    shapes += [Shape(f"sort={sort}", sort=sort) for sort in SORTS if sort != "-created_at"]
    shapes += [Shape(f"sort={sort}, page 2", sort=sort, second_page=True) for sort in SORTS]
    shapes += [
        Shape(
            f"sort={sort}, deep page (row {deep:,})",
            sort=sort,
            cursor=await deep_cursor(connection, sort, deep),
        )
        for sort in ("-created_at", "price", "name", "-id")
    ]
    f = ProductFilters
    shapes += [
        Shape("q=wireless headphones (ranked)", f(q="wireless headphones")),
        Shape(
            "q=wireless headphones, page 2 (ranked)", f(q="wireless headphones"), second_page=True
        ),
        Shape("q=steel (common word, ranked)", f(q="steel")),
        Shape("q=steel, page 2 (ranked)", f(q="steel"), second_page=True),
        Shape(
            "q=steel, ranked, past the ranked window",
            f(q="steel"),
            cursor=CODEC.encode(product_queries.BEYOND_WINDOW, [products // 2]),
        ),
        Shape("q=bamboo desk, sort=-price (mid-selective)", f(q="bamboo desk"), sort="-price"),
        Shape("q=zebra, sort=price (no match)", f(q="zebra"), sort="price"),
        Shape("q=zebra (no match, ranked)", f(q="zebra")),
        Shape("q=steel, sort=price", f(q="steel"), sort="price"),
        Shape(
            "q=steel, sort=-created_at, page 2", f(q="steel"), sort="-created_at", second_page=True
        ),
        Shape(f"q={sku} (a SKU)", f(q=sku)),
        Shape(f"q={sku[:-3]} (a SKU prefix)", f(q=sku[:-3])),
        Shape('q="bamboo lamp" -oak (websearch syntax)', f(q='"bamboo lamp" -oak')),
        Shape("tag=eco", f(tags=["eco"])),
        Shape("tag=eco&tag=gift", f(tags=["eco", "gift"])),
        Shape("tag=no-such-tag, sort=price (no match)", f(tags=["no-such-tag"]), sort="price"),
        Shape("tag=eco, sort=price, page 2", f(tags=["eco"]), sort="price", second_page=True),
        Shape("min_price=10&max_price=20", f(min_price=Decimal(10), max_price=Decimal(20))),
        Shape(
            "min_price=10&max_price=20, sort=price",
            f(min_price=Decimal(10), max_price=Decimal(20)),
            sort="price",
        ),
        Shape("min_price=5000 (rare), sort=-created_at", f(min_price=Decimal(5000))),
        Shape("in_stock=true", f(in_stock=True)),
        Shape("in_stock=false", f(in_stock=False)),
        Shape("status=active", f(status="active")),
        Shape("status=archived, sort=name", f(status="archived"), sort="name"),
        Shape(f"category_id={parent} (with descendants)", f(category_id=parent)),
        Shape(f"category_id={parent}, sort=price", f(category_id=parent), sort="price"),
        Shape(f"category_id={leaf} (a leaf), page 2", f(category_id=leaf), second_page=True),
        Shape(
            f"q=steel, category_id={parent}, in_stock, status=active",
            f(q="steel", category_id=parent, in_stock=True, status="active"),
        ),
    ]
    return shapes


def shape_of(query: str) -> tuple[Shape, int]:
    """The shape and limit of an API query string such as bench/varied_bench.py prints."""
    params = parse_qs(query, keep_blank_values=True)
    one = {key: values[-1] for key, values in params.items()}
    filters = ProductFilters(
        q=one.get("q"),
        category_id=int(one["category_id"]) if "category_id" in one else None,
        status=one.get("status"),
        min_price=Decimal(one["min_price"]) if "min_price" in one else None,
        max_price=Decimal(one["max_price"]) if "max_price" in one else None,
        in_stock=one["in_stock"] == "true" if "in_stock" in one else None,
        tags=params.get("tag", []),
    )
    return Shape(query, filters, sort=one.get("sort")), int(one.get("limit", 20))


async def explain_queries(connection: asyncpg.Connection, queries: list[str], pages: int) -> None:
    for query in queries:
        shape, limit = shape_of(query)
        cursor = None
        for page in range(pages):
            explaining = ExplainingConnection(connection, text=True)
            body = await list_page(explaining, shape, limit, cursor)
            total = sum(e.wall_ms for e in explaining.explained)
            print(
                f"\n=== {query} page {page + 1}: {len(explaining.explained)} statements, "
                f"{total:.1f} ms (wall of the real queries)"
            )
            for e in explaining.explained:
                print(f"--- {e.wall_ms:.1f} ms: {e.sql}\n{e.text}")
            cursor = body["next_cursor"]
            if cursor is None:
                break


async def run(connection: asyncpg.Connection, products: int) -> int:
    shapes = await all_shapes(connection, products)
    failures = 0
    print(f"\n{'shape':<52}{'plan ms':>9}{'wall ms':>9}  indexes")
    for shape in shapes:
        explained = await explain_shape(connection, shape)
        scans = seq_scans_on_products(explained.plan)
        failures += bool(scans)
        verdict = "  SEQ SCAN ON products" if scans else ""
        print(
            f"{shape.label[:51]:<52}{explained.plan['Execution Time']:>9.2f}"
            f"{explained.wall_ms:>9.2f}  {', '.join(indexes_used(explained.plan))}{verdict}"
        )
        if scans:
            # What the index path would cost: is an index missing, or is the scan the better plan?
            async with connection.transaction():
                await connection.execute("SET LOCAL enable_seqscan = off")
                forced = await explain_shape(connection, shape)
            print(
                f"{'  ... with enable_seqscan = off':<52}{forced.plan['Execution Time']:>9.2f}"
                f"{forced.wall_ms:>9.2f}  {', '.join(indexes_used(forced.plan))}"
            )
    print(f"\n{len(shapes)} shapes, {failures} with a sequential scan on products")
    return failures


async def main_async(args: argparse.Namespace) -> int:
    url = args.database_url
    throwaway = url is None
    if throwaway:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/catalog_explain_{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(bootstrap.migrate, url)
    try:
        if throwaway:
            started = time.perf_counter()
            await seed_catalog(url, args.products)
            admin = await asyncpg.connect(bootstrap.asyncpg_dsn(url))
            try:
                await admin.execute("VACUUM (ANALYZE) products", timeout=3600)
            finally:
                await admin.close()
            print(f"seeded {args.products:,} products in {time.perf_counter() - started:.0f} s")
        # The service's own engine: its connection settings are the ones the plans run under.
        engine = build_engine(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
        try:
            async with read_connection(engine) as driver:
                products = await driver.fetchval("SELECT count(*) FROM products")
                print(f"{products:,} products in the catalog")
                if args.query:
                    await explain_queries(driver, args.query, args.pages)
                    return 0
                return await run(driver, products)
        finally:
            await engine.dispose()
    finally:
        if throwaway:
            await bootstrap.drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="an existing, seeded catalog (left as it is)")
    parser.add_argument("--query", action="append", help="an API query string to explain")
    parser.add_argument("--pages", type=int, default=1, help="pages of each --query")
    sys.exit(1 if asyncio.run(main_async(parser.parse_args())) else 0)


if __name__ == "__main__":
    main()
