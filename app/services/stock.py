"""Stock: atomic adjustments and their append-only ledger."""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import DomainError, InsufficientStock, ProductNotFound, Unprocessable
from app.core.metrics import STOCK_ADJUSTMENTS
from app.models import Product, StockAdjustment
from app.schemas.base import MAX_INT
from app.schemas.stock import StockAdjust
from app.services.pagination import CursorCodec
from app.services.product_queries import PRODUCT_JSON, ProductRow
from app.services.products import check_precondition

HISTORY_CURSOR = "stock-history"

# One statement: the conditional UPDATE (row-locked by PostgreSQL, so concurrent adjustments
# queue and each re-checks the condition on the row it finally gets) and the ledger row,
# written only when the UPDATE matched. `version` is bumped here because this bypasses the
# ORM's version_id_col; updated_at moves by trigger. The range check runs in bigint so that
# an increment past the integer maximum is refused, not an overflow error.
ADJUST_SQL = """
WITH updated AS (
    UPDATE products AS p
    SET stock = p.stock + CAST(:delta AS integer), version = p.version + 1
    WHERE p.id = :product_id AND p.deleted_at IS NULL
        AND p.stock + CAST(:delta AS bigint) BETWEEN 0 AND {max_int}{version_check}
    RETURNING p.id, p.stock, p.version, {product_json} AS json
), ledger AS (
    INSERT INTO stock_adjustments (product_id, user_id, delta, stock_after, reason)
    SELECT id, CAST(:user_id AS bigint), CAST(:delta AS integer), stock, CAST(:reason AS text)
    FROM updated
)
SELECT version, json FROM updated
"""
_ADJUST = text(ADJUST_SQL.format(max_int=MAX_INT, version_check="", product_json=PRODUCT_JSON))
_ADJUST_IF_VERSION = text(
    ADJUST_SQL.format(
        max_int=MAX_INT,
        version_check=" AND p.version = CAST(:expected AS integer)",
        product_json=PRODUCT_JSON,
    )
)


class StockService:
    def __init__(self, session: AsyncSession, *, require_if_match: bool = False) -> None:
        self.session = session
        self.require_if_match = require_if_match

    async def adjust(
        self, product_id: int, data: StockAdjust, *, user_id: int, expected_version: int | None
    ) -> ProductRow:
        """Apply `data.delta` in one conditional UPDATE; the product as GET renders it."""
        if expected_version is None and self.require_if_match:
            await self._refuse(product_id, data.delta, expected_version)
        params = {
            "product_id": product_id,
            "delta": data.delta,
            "user_id": user_id,
            "reason": data.reason,
        }
        if expected_version is None:
            row = (await self.session.execute(_ADJUST, params)).first()
        else:
            row = (
                await self.session.execute(
                    _ADJUST_IF_VERSION, {**params, "expected": expected_version}
                )
            ).first()
        if row is None:
            await self._refuse(product_id, data.delta, expected_version)
        STOCK_ADJUSTMENTS.labels(outcome="applied").inc()
        return ProductRow(version=row.version, json=row.json)

    async def _refuse(self, product_id: int, delta: int, expected_version: int | None) -> NoReturn:
        """Say why the adjustment cannot apply, from one read of the product."""
        error = await self._refusal(product_id, delta, expected_version)
        STOCK_ADJUSTMENTS.labels(outcome=error.type_slug).inc()
        raise error

    async def _refusal(
        self, product_id: int, delta: int, expected_version: int | None
    ) -> DomainError:
        current = (
            await self.session.execute(
                select(Product.version, Product.stock).where(
                    Product.id == product_id, Product.deleted_at.is_(None)
                )
            )
        ).first()
        if current is None:
            return ProductNotFound(f"Product {product_id} does not exist")
        try:
            check_precondition(expected_version, current.version, required=self.require_if_match)
        except DomainError as error:
            return error
        if current.stock + delta > MAX_INT:
            return Unprocessable(
                f"Stock would exceed {MAX_INT} (it is {current.stock})", loc=["body", "delta"]
            )
        # Also the answer when the stock was refilled after the UPDATE found it short.
        return InsufficientStock(
            f"Stock cannot go below 0: it is {current.stock}, the delta is {delta}"
        )

    async def history(
        self, product_id: int, codec: CursorCodec, *, limit: int, cursor: str | None
    ) -> tuple[list[StockAdjustment], str | None]:
        """A live product's adjustments, newest first, keyset-paged by id."""
        exists = await self.session.scalar(
            select(Product.id).where(Product.id == product_id, Product.deleted_at.is_(None))
        )
        if exists is None:
            raise ProductNotFound(f"Product {product_id} does not exist")
        query = (
            select(StockAdjustment)
            .where(StockAdjustment.product_id == product_id)
            .order_by(StockAdjustment.id.desc())
            .limit(limit + 1)
        )
        if cursor is not None:
            decoded = codec.decode(cursor, HISTORY_CURSOR)
            if len(decoded) != 1 or not isinstance(decoded[0], int):
                raise Unprocessable("The cursor is invalid", loc=["query", "cursor"])
            query = query.where(StockAdjustment.id < decoded[0])
        entries = list(await self.session.scalars(query))
        if len(entries) > limit:
            entries = entries[:limit]
            return entries, codec.encode(HISTORY_CURSOR, [entries[-1].id])
        return entries, None
