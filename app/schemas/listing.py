"""Query parameters of the list endpoints. Unknown parameters are refused (422)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from app.schemas.base import DbId, Schema, Storable
from app.schemas.product import Price, ProductStatus, Tag

Limit = Annotated[int, Field(ge=1, le=100)]
SearchText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable
]
# What CursorCodec.encode writes: base64url payload "." base64url signature.
Cursor = Annotated[
    str,
    StringConstraints(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"),
]


class PageParams(Schema):
    limit: Limit = 20
    cursor: Cursor | None = None


class ProductListParams(PageParams):
    sort: (
        Literal["id", "-id", "created_at", "-created_at", "price", "-price", "name", "-name"] | None
    ) = Field(default=None, description="default -created_at; by rank when q is given")
    q: SearchText | None = None
    category_id: DbId | None = None
    status: ProductStatus | None = None
    min_price: Price | None = None
    max_price: Price | None = None
    in_stock: bool | None = None
    tag: list[Tag] = Field(default_factory=list, max_length=20)
