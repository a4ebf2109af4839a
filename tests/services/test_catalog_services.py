"""Services hold the rules and flush, never commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import (
    CategoryInUse,
    PreconditionRequired,
    ProductNotFound,
    SkuTaken,
    Unprocessable,
    VersionMismatch,
)
from app.models import Product
from app.schemas.category import CategoryCreate, CategoryUpdate
from app.schemas.product import ProductCreate, ProductUpdate
from app.services.categories import CategoryService
from app.services.products import ProductService

pytestmark = pytest.mark.usefixtures("users")


@pytest.fixture
async def session(app: object) -> AsyncIterator[AsyncSession]:
    async with app.state.sessionmaker() as s:  # type: ignore[attr-defined]
        yield s
        await s.rollback()


async def committed_products(app: object) -> int:
    async with app.state.sessionmaker() as other:  # type: ignore[attr-defined]
        return int(await other.scalar(select(func.count()).select_from(Product)) or 0)


def new_product(**overrides: object) -> ProductCreate:
    data = {"sku": "SVC-1", "name": "Kettle", "price": "30", "currency": "eur", **overrides}
    return ProductCreate.model_validate(data)


class TestProductService:
    async def test_create_flushes_but_does_not_commit(
        self, session: AsyncSession, app: object
    ) -> None:
        product = await ProductService(session).create(new_product())
        assert product.id is not None
        assert product.version == 1
        assert product.created_at is not None
        assert await committed_products(app) == 0

    async def test_duplicate_sku_raises_sku_taken(self, session: AsyncSession) -> None:
        service = ProductService(session)
        await service.create(new_product(sku="SAME"))
        with pytest.raises(SkuTaken):
            await service.create(new_product(sku="same"))

    async def test_update_checks_the_expected_version(self, session: AsyncSession) -> None:
        service = ProductService(session)
        product = await service.create(new_product())
        with pytest.raises(VersionMismatch):
            await service.update(
                product.id, ProductUpdate.model_validate({"stock": 2}), expected_version=7
            )
        updated = await service.update(
            product.id, ProductUpdate.model_validate({"stock": 2}), expected_version=1
        )
        assert (updated.stock, updated.version) == (2, 2)

    async def test_if_match_can_be_required(self, session: AsyncSession) -> None:
        product = await ProductService(session).create(new_product())
        strict = ProductService(session, require_if_match=True)
        with pytest.raises(PreconditionRequired):
            await strict.delete(product.id, expected_version=None)

    async def test_deleted_product_is_not_found(self, session: AsyncSession) -> None:
        service = ProductService(session)
        product = await service.create(new_product())
        await service.delete(product.id, expected_version=None)
        with pytest.raises(ProductNotFound):
            await service.get_for_update(product.id)


class TestCategoryService:
    async def test_cycle_is_refused(self, session: AsyncSession) -> None:
        service = CategoryService(session)
        root = await service.create(CategoryCreate(slug="root", name="Root"))
        child = await service.create(CategoryCreate(slug="child", name="Child", parent_id=root.id))
        with pytest.raises(Unprocessable, match="own ancestor"):
            await service.update(root.id, CategoryUpdate(parent_id=child.id))

    async def test_in_use_category_cannot_be_deleted(self, session: AsyncSession) -> None:
        service = CategoryService(session)
        category = await service.create(CategoryCreate(slug="used", name="Used"))
        await ProductService(session).create(new_product(category_id=category.id))
        with pytest.raises(CategoryInUse):
            await service.delete(category.id)
