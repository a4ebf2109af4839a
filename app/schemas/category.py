from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, StringConstraints, model_validator

from app.schemas.base import DbId, ReadSchema, Schema, Storable, Timestamp, null_only_for

Slug = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=r"^[a-z0-9-]+$")]
CategoryName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable
]
CategoryDescription = Annotated[str, StringConstraints(max_length=10_000), Storable]


class CategoryCreate(Schema):
    slug: Slug
    name: CategoryName
    description: CategoryDescription = ""
    parent_id: DbId | None = None


class CategoryUpdate(Schema):
    model_config = ConfigDict(json_schema_extra=null_only_for("parent_id"))

    slug: Slug | None = None
    name: CategoryName | None = None
    description: CategoryDescription | None = None
    parent_id: DbId | None = None

    @model_validator(mode="after")
    def _null_only_where_nullable(self) -> CategoryUpdate:
        for field in self.model_fields_set - {"parent_id"}:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class CategoryRead(ReadSchema):
    id: int
    slug: str
    name: str
    description: str
    parent_id: int | None
    created_at: Timestamp
    updated_at: Timestamp
