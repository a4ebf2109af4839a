from __future__ import annotations

import math
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from app.schemas.base import (
    MAX_INT,
    DbId,
    NotBool,
    ReadSchema,
    Schema,
    Storable,
    StorableStr,
    Timestamp,
    null_only_for,
)

CENT = Decimal("0.01")
MAX_PRICE = Decimal("9999999999.99")  # Numeric(12, 2): ten integer digits


class ProductStatus(StrEnum):
    draft = "draft"
    active = "active"
    archived = "archived"


def _to_price(value: object) -> object:
    if isinstance(value, float):
        # Request JSON is parsed with Decimal floats; a float here came from Python code.
        raise ValueError("price must be a decimal string or JSON number, not a float")
    if isinstance(value, bool):
        raise ValueError("price must be a number")
    return value


def _check_price(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("price must be a finite number")
    if value < 0:
        raise ValueError("price must be >= 0")
    if value > MAX_PRICE:  # before quantize, which fails on huge exponents
        raise ValueError("price must have at most 10 integer digits")
    if value != value.quantize(CENT):
        raise ValueError("price must have at most 2 decimal places")
    return value.quantize(CENT)


Price = Annotated[
    Decimal,
    BeforeValidator(_to_price),
    AfterValidator(_check_price),
    PlainSerializer(lambda v: str(v), return_type=str, when_used="json"),
    Field(examples=["19.99"]),
]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable
]
Description = Annotated[str, StringConstraints(max_length=10_000), Storable]
Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{3}$", to_upper=True),
    Field(examples=["EUR"]),
]
Stock = Annotated[int, Field(ge=0, le=MAX_INT), NotBool]
Tag = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40), Storable
]
AttributeValue = StorableStr | bool | int | float
MAX_TAGS = 20
MAX_ATTRIBUTES = 50


def _normalize_tags(tags: list[str]) -> list[str]:
    unique = list(dict.fromkeys(tag.lower() for tag in tags))
    if len(unique) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return unique


def _check_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    if len(attributes) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
    for key, value in attributes.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"attribute {key!r} must be a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
            raise ValueError(f"attribute {key!r} is too large to store exactly")
    return attributes


def _decimal_attribute(value: object) -> object:
    # JSON numbers arrive as Decimal; JSONB stores them as int or float.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


AttributeKey = Annotated[str, StringConstraints(min_length=1, max_length=100), Storable]
Attributes = Annotated[
    dict[AttributeKey, Annotated[AttributeValue, BeforeValidator(_decimal_attribute)]],
    AfterValidator(_check_attributes),
]
Tags = Annotated[list[Tag], Field(max_length=200), AfterValidator(_normalize_tags)]


class ProductCreate(Schema):
    sku: Sku
    name: Name
    description: Description = ""
    price: Price
    currency: Currency
    stock: Stock = 0
    status: ProductStatus = ProductStatus.draft
    category_id: DbId | None = None
    tags: Tags = Field(default_factory=list)
    attributes: Attributes = Field(default_factory=dict)


class ProductUpdate(Schema):
    """Partial update: only the fields sent are applied. `null` clears `category_id` only."""

    model_config = ConfigDict(json_schema_extra=null_only_for("category_id"))

    sku: Sku | None = None
    name: Name | None = None
    description: Description | None = None
    price: Price | None = None
    currency: Currency | None = None
    stock: Stock | None = None
    status: ProductStatus | None = None
    category_id: DbId | None = None
    tags: Tags | None = None
    attributes: Attributes | None = None

    @model_validator(mode="after")
    def _null_only_where_nullable(self) -> Self:
        for field in self.model_fields_set - {"category_id"}:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class ProductRead(ReadSchema):
    id: int
    sku: str
    name: str
    description: str
    price: Price
    currency: str
    stock: int
    status: ProductStatus
    category_id: int | None
    tags: list[str]
    attributes: dict[str, Any]
    version: int
    created_at: Timestamp
    updated_at: Timestamp
