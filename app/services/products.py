"""Product writes: create, update, soft delete. Rules live here; the session is the caller's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import (
    PreconditionRequired,
    ProductNotFound,
    SkuTaken,
    Unprocessable,
    VersionMismatch,
)
from app.core.metrics import PRODUCTS_CREATED
from app.models import Product
from app.schemas.product import ProductCreate, ProductUpdate

FOREIGN_KEY_VIOLATION = "23503"
UNIQUE_VIOLATION = "23505"


def translate_integrity_error(error: IntegrityError) -> Exception:
    """Name the rule a write broke: a taken SKU or a category that does not exist."""
    state = getattr(error.orig, "sqlstate", None)
    if state == UNIQUE_VIOLATION:
        return SkuTaken("Another live product already uses this SKU")
    if state == FOREIGN_KEY_VIOLATION:
        return Unprocessable(
            "category_id does not reference a category", loc=["body", "category_id"]
        )
    return error


def check_precondition(expected_version: int | None, actual: int, *, required: bool) -> None:
    if expected_version is None:
        if required:
            raise PreconditionRequired("Send If-Match with the product's ETag")
        return
    if expected_version != actual:
        raise VersionMismatch(f"The product is at version {actual}, not {expected_version}")


class ProductService:
    def __init__(self, session: AsyncSession, *, require_if_match: bool = False) -> None:
        self.session = session
        self.require_if_match = require_if_match

    async def create(self, data: ProductCreate) -> Product:
        product = Product(**data.model_dump())
        self.session.add(product)
        await self._flush()
        PRODUCTS_CREATED.inc()
        return product

    async def get_for_update(self, product_id: int) -> Product:
        """The live product, locked until the transaction ends, so writers queue up on it."""
        product = await self.session.scalar(
            select(Product)
            .where(Product.id == product_id, Product.deleted_at.is_(None))
            .with_for_update()
        )
        if product is None:
            raise ProductNotFound(f"Product {product_id} does not exist")
        return product

    async def update(
        self, product_id: int, changes: ProductUpdate, *, expected_version: int | None
    ) -> Product:
        product = await self.get_for_update(product_id)
        check_precondition(expected_version, product.version, required=self.require_if_match)
        values: dict[str, Any] = changes.changes()
        for field, value in values.items():
            setattr(product, field, value)
        if values:
            await self._flush()
        return product

    async def delete(self, product_id: int, *, expected_version: int | None) -> None:
        product = await self.get_for_update(product_id)
        check_precondition(expected_version, product.version, required=self.require_if_match)
        product.deleted_at = func.now()
        await self._flush()

    async def _flush(self) -> None:
        try:
            await self.session.flush()
        except IntegrityError as error:
            raise translate_integrity_error(error) from error
