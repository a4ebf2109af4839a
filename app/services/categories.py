"""Category tree: CRUD with cycle prevention and in-use checks."""

from __future__ import annotations

from sqlalchemy import exists, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import CategoryInUse, CategoryNotFound, SlugTaken, Unprocessable
from app.models import Category, Product
from app.schemas.category import CategoryCreate, CategoryUpdate
from app.services.pagination import CursorCodec

UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"
# Serialises re-parenting, so two concurrent moves cannot close a cycle between them.
TREE_LOCK_SQL = text("SELECT pg_advisory_xact_lock(hashtext('catalog.categories.tree'))")
IS_DESCENDANT_SQL = text(
    """
    WITH RECURSIVE ancestors(id, parent_id) AS (
        SELECT id, parent_id FROM categories WHERE id = :candidate
        UNION ALL
        SELECT c.id, c.parent_id FROM categories c JOIN ancestors a ON c.id = a.parent_id
    )
    SELECT EXISTS (SELECT 1 FROM ancestors WHERE id = :category)
    """
)


class CategoryService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, category_id: int, *, for_update: bool = False) -> Category:
        query = select(Category).where(Category.id == category_id)
        category = await self.session.scalar(query.with_for_update() if for_update else query)
        if category is None:
            raise CategoryNotFound(f"Category {category_id} does not exist")
        return category

    async def list(
        self, codec: CursorCodec, *, limit: int, cursor: str | None
    ) -> tuple[list[Category], str | None]:
        query = select(Category).order_by(Category.id).limit(limit + 1)
        if cursor is not None:
            (after_id,) = codec.decode(cursor, "id")
            if not isinstance(after_id, int):
                raise Unprocessable("The cursor is invalid", loc=["query", "cursor"])
            query = query.where(Category.id > after_id)
        categories = list(await self.session.scalars(query))
        if len(categories) > limit:
            categories = categories[:limit]
            return categories, codec.encode("id", [categories[-1].id])
        return categories, None

    async def create(self, data: CategoryCreate) -> Category:
        category = Category(**data.model_dump())
        self.session.add(category)
        await self._flush()
        return category

    async def update(self, category_id: int, changes: CategoryUpdate) -> Category:
        values = changes.changes()
        if values.get("parent_id") is not None:
            await self.session.execute(TREE_LOCK_SQL)
        category = await self.get(category_id, for_update=True)
        new_parent = values.get("parent_id")
        if new_parent is not None and await self._would_cycle(category.id, new_parent):
            raise Unprocessable(
                "parent_id would make the category its own ancestor", loc=["body", "parent_id"]
            )
        for field, value in values.items():
            setattr(category, field, value)
        if values:
            await self._flush()
        return category

    async def delete(self, category_id: int) -> None:
        # The row lock conflicts with the key-share lock a product insert takes on its
        # category, so no product can slip in between the check and the delete.
        category = await self.get(category_id, for_update=True)
        in_use = await self.session.scalar(
            select(
                exists().where(Product.category_id == category_id, Product.deleted_at.is_(None))
                | exists().where(Category.parent_id == category_id)
            )
        )
        if in_use:
            raise CategoryInUse("The category still has products or subcategories")
        await self.session.delete(category)
        await self._flush()

    async def _would_cycle(self, category_id: int, new_parent_id: int) -> bool:
        if new_parent_id == category_id:
            return True
        found = await self.session.scalar(
            IS_DESCENDANT_SQL, {"candidate": new_parent_id, "category": category_id}
        )
        return bool(found)

    async def _flush(self) -> None:
        try:
            await self.session.flush()
        except IntegrityError as error:
            state = getattr(error.orig, "sqlstate", None)
            if state == UNIQUE_VIOLATION:
                raise SlugTaken("Another category already uses this slug") from error
            if state == FOREIGN_KEY_VIOLATION:
                raise Unprocessable(
                    "parent_id does not reference a category", loc=["body", "parent_id"]
                ) from error
            raise
