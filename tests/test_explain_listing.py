"""The main product-list queries read through an index, never a scan of the whole table.

A catalog of 20,000 seeded products is enough for the planner to prefer a sequential scan
wherever no index serves; the plans checked are those of the SQL the service itself sends
(see bench/explain_listing.py, which runs every shape on a million products).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from app.db.session import read_connection
from app.services.product_queries import ProductFilters
from app.services.seed import seed_catalog
from bench.explain_listing import (
    Shape,
    explain_shape,
    indexes_used,
    plan_nodes,
    seq_scans_on_products,
)

ROWS = 20_000
SHAPES = [
    Shape("default sort"),
    Shape("sort=price, page 2", sort="price", second_page=True),
    Shape("sort=-name, page 2", sort="-name", second_page=True),
    Shape("tag=eco", ProductFilters(tags=["eco"])),
    Shape("tag=eco&tag=gift, page 2", ProductFilters(tags=["eco", "gift"]), second_page=True),
    Shape("q ranked", ProductFilters(q="wireless headphones")),
    Shape("q, sort=price", ProductFilters(q="steel"), sort="price"),
    Shape("q common word, ranked", ProductFilters(q="steel")),
    Shape("q matching nothing, sort=price", ProductFilters(q="zebra"), sort="price"),
    Shape("unknown tag, sort=price", ProductFilters(tags=["no-such-tag"]), sort="price"),
    Shape("out of stock", ProductFilters(in_stock=False)),
    Shape("price range", ProductFilters(min_price=Decimal(10), max_price=Decimal(12))),
]


@pytest.fixture
async def catalog(app: Any, database_url: str, users: object) -> AsyncIterator[asyncpg.Connection]:
    await seed_catalog(database_url, ROWS)  # COPY, then ANALYZE
    try:
        async with read_connection(app.state.engine) as connection:
            yield connection
    finally:
        async with app.state.engine.begin() as connection:
            await connection.execute(text("TRUNCATE products, categories RESTART IDENTITY CASCADE"))


async def test_main_list_shapes_use_an_index(catalog: asyncpg.Connection) -> None:
    parent = await catalog.fetchval(
        "SELECT id FROM categories c WHERE EXISTS (SELECT 1 FROM categories k "
        "WHERE k.parent_id = c.id) ORDER BY id LIMIT 1"
    )
    shapes = [*SHAPES, Shape("category with descendants", ProductFilters(category_id=parent))]
    for shape in shapes:
        explained = await explain_shape(catalog, shape)
        assert seq_scans_on_products(explained.plan) == [], (shape.label, explained.plan)
        assert indexes_used(explained.plan), shape.label


def _product_reads(explained: Any) -> list[tuple[str, str]]:
    """(node type, index) of every read of products in the plans, in plan order."""
    return [
        (node["Node Type"], node.get("Index Name", ""))
        for node in plan_nodes(explained.plan["Plan"])
        if node.get("Relation Name") == "products"
    ]


async def test_filtered_walks_read_only_the_sort_index(catalog: asyncpg.Connection) -> None:
    """Migration 0003's covering indexes: a list filtered on category, status, stock, price
    or tags, and the walk of a search in a category, read the sort index alone; the table is
    read by id for the page's rows (or, in a search, for the rows the walk keeps)."""
    await catalog.execute("VACUUM products")  # index-only scans need the visibility map
    parent = await catalog.fetchval(
        "SELECT id FROM categories c WHERE EXISTS (SELECT 1 FROM categories k "
        "WHERE k.parent_id = c.id) ORDER BY id LIMIT 1"
    )
    f = ProductFilters
    shapes = [
        Shape("category, in stock, active", f(category_id=parent, in_stock=True, status="active")),
        Shape("tags, sort=name", f(tags=["eco", "gift"]), sort="name"),
        Shape("price range, sort=-created_at", f(min_price=Decimal(10), max_price=Decimal(12))),
        Shape("search in a category", f(q="steel", category_id=parent, status="active")),
    ]
    for shape in shapes:
        explained = await explain_shape(catalog, shape)
        reads = _product_reads(explained)
        walks = [index for kind, index in reads if kind == "Index Only Scan"]
        assert walks, (shape.label, reads)
        assert all(index.startswith("ix_products_live_") for index in walks), reads
        others = {(kind, index) for kind, index in reads if kind != "Index Only Scan"}
        # Whatever else reads products: by id (the page's rows, or a search's kept rows),
        # or, for a search, its collection through the words' index.
        allowed = {("Index Scan", "pk_products"), ("Index Scan", "ix_products_live_id")}
        if shape.filters.q is not None:
            allowed |= {("Bitmap Heap Scan", "")}
        assert others <= allowed, (shape.label, reads)
