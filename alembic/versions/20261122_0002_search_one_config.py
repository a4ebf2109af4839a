"""search: one text-search config for document and query; SKU prefix index

The first schema indexed name and SKU with 'simple' and the description with 'english', so a
query had to be parsed with both configs and OR-ed, which doubled the planner's estimate of
the matches and let it pick an index walk where a bitmap scan was 10x faster. One config
('english') on both sides needs one tsquery. The live-SKU unique index moves to
text_pattern_ops so `lower(sku) LIKE 'prefix%'` can use it under any database collation.
A partial index finds the (few) live products out of stock.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 08:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(sku, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B')"
)
PREVIOUS_SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('simple'::regconfig, coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(sku, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B')"
)
LIVE = sa.text("deleted_at IS NULL")


def _replace_search_vector(expression: str) -> None:
    # PostgreSQL 15 cannot change a generated column's expression in place.
    op.drop_index("ix_products_search", table_name="products", postgresql_using="gin")
    op.drop_column("products", "search")
    op.add_column(
        "products",
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed(expression, persisted=True),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_products_search", "products", ["search"], unique=False, postgresql_using="gin"
    )


def _replace_sku_index(opclass: str | None) -> None:
    op.drop_index("uq_products_live_sku", table_name="products", postgresql_where=LIVE)
    op.create_index(
        "uq_products_live_sku",
        "products",
        [sa.func.lower(sa.text("sku")).label("lower_sku")],
        unique=True,
        postgresql_where=LIVE,
        postgresql_ops={"lower_sku": opclass} if opclass else {},
    )


def upgrade() -> None:
    _replace_search_vector(SEARCH_VECTOR_SQL)
    _replace_sku_index("text_pattern_ops")
    op.create_index(
        "ix_products_live_out_of_stock",
        "products",
        ["id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL AND stock = 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_products_live_out_of_stock", table_name="products")
    _replace_sku_index(None)
    _replace_search_vector(PREVIOUS_SEARCH_VECTOR_SQL)
