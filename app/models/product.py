from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin

PRODUCT_STATUSES = ("draft", "active", "archived")

# Weighted document for full-text search: name and SKU rank above the description.
# One config for every field, the same one queries are parsed with (SEARCH_CONFIG), so a
# query is one tsquery whose matches the planner can estimate.
SEARCH_CONFIG = "english"
SEARCH_VECTOR_SQL = (
    f"setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, coalesce(name, '')), 'A') || "
    f"setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, coalesce(sku, '')), 'A') || "
    f"setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, coalesce(description, '')), 'B')"
)
LIVE = text("deleted_at IS NULL")
# What a filtered list tests on each row it walks, kept in the sort indexes.
LISTING_FILTERS = ("category_id", "status", "stock", "price", "tags")


class Product(TimestampMixin, Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint(f"status IN {PRODUCT_STATUSES!r}", name="status_known"),
        # A SKU is unique among live products only, so deleting a product frees its SKU.
        # text_pattern_ops also serves `lower(sku) LIKE 'prefix%'` whatever the collation.
        Index(
            "uq_products_live_sku",
            func.lower(text("sku")).label("lower_sku"),
            unique=True,
            postgresql_where=LIVE,
            postgresql_ops={"lower_sku": "text_pattern_ops"},
        ),
        # Keyset pagination: one index per sort, each ending in id for the tie-break, with
        # the filter columns included so a filtered walk reads no table rows (migration 0003).
        *(
            Index(
                f"ix_products_live_{name}",
                *columns,
                postgresql_where=LIVE,
                postgresql_include=[c for c in LISTING_FILTERS if c not in columns],
            )
            for name, columns in (
                ("created_at_id", ("created_at", "id")),
                ("price_id", ("price", "id")),
                ("name_id", ("name", "id")),
                ("id", ("id",)),
            )
        ),
        # A category's products: narrow, to combine with a search's matches, and with every
        # sort column, to collect them without the table.
        Index("ix_products_live_category_status", "category_id", "status", postgresql_where=LIVE),
        Index(
            "ix_products_live_category_sorts",
            "category_id",
            "status",
            postgresql_where=LIVE,
            postgresql_include=["stock", "created_at", "price", "name", "id"],
        ),
        # Out of stock is a small share that a back office lists often (in_stock=false).
        Index(
            "ix_products_live_out_of_stock",
            "category_id",
            "status",
            postgresql_where=text("deleted_at IS NULL AND stock = 0"),
            postgresql_include=["created_at", "price", "name", "id"],
        ),
        Index("ix_products_search", "search", postgresql_using="gin"),
        Index("ix_products_tags", "tags", postgresql_using="gin"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, server_default="", default="")
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    stock: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    status: Mapped[str] = mapped_column(String(16), server_default="draft", default="draft")
    category_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("categories.id", ondelete="SET NULL")
    )
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}", default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}", default=dict)
    version: Mapped[int] = mapped_column(Integer, server_default="1", default=1)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    search: Mapped[str] = mapped_column(
        TSVECTOR, Computed(SEARCH_VECTOR_SQL, persisted=True), deferred=True
    )

    # Optimistic concurrency: the ORM adds `AND version = :loaded` to every UPDATE it emits
    # and raises StaleDataError when another transaction got there first.
    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}  # noqa: RUF012
