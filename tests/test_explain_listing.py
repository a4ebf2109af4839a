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
from bench.explain_listing import Shape, explain_shape, indexes_used, seq_scans_on_products

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
