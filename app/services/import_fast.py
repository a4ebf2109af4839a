"""The import's fast path: an NDJSON line validated straight from its bytes, when that is safe.

Only its yes counts: a line it refuses goes the exact way (app.services.import_rows: parsed as
the API parses a body, then `ProductCreate`), so every row error still comes from the schema.
Where JSON mode could say yes to what the exact way refuses, or read a value differently, the
fast path says no instead. It has two steps:

- `_PlainRow`, for a line without a `\\u` escape: `ProductCreate`'s constraints, all checked in
  pydantic-core, none in Python. Without a `\\u` escape no string in the line can hold a NUL or
  a lone surrogate (pydantic's JSON parser refuses control characters and invalid UTF-8), so
  the `Storable` checks have nothing to find. Integers are strict: JSON true is no 1, a float
  no integer. The price is a plain decimal string with at most 10 integer digits and 2
  decimals (what an export writes); any other price goes the exact way. Attribute values are
  strings, booleans and integers within 2**53: a float goes the exact way, which reads 1.0 as
  1. Tags are lowercased and deduplicated as the schema does, in Python.
- `_FastRow`, for any other line: `ProductCreate` itself in JSON mode, with the same guards.

tests/services/test_import_fast.py holds both to the exact way on generated lines.
"""

from __future__ import annotations

import operator
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    field_validator,
)

from app.schemas.base import MAX_BIGINT, MAX_INT
from app.schemas.product import CENT, MAX_ATTRIBUTES, ProductCreate, _normalize_tags
from app.services.product_columns import WRITABLE, copy_values

Record = tuple[Any, ...]  # a valid row: its line, then the WRITABLE values as COPY takes them

MAX_EXACT_INT = 2**53
# The values of ProductStatus (tests/services/test_import_fast.py holds them equal).
StatusValue = Literal["draft", "active", "archived"]


class _PlainRow(BaseModel):
    """`ProductCreate`'s rules for a line without `\\u` escapes, with no Python validator."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sku: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    ]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""
    price: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,10}(?:\.[0-9]{1,2})?$")]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$", to_upper=True)]
    stock: Annotated[int, Field(ge=0, le=MAX_INT)] = 0
    status: StatusValue = "draft"
    category_id: Annotated[int, Field(ge=1, le=MAX_BIGINT)] | None = None
    tags: Annotated[
        list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]],
        Field(max_length=200),
    ] = Field(default_factory=list)
    attributes: Annotated[
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=100)],
            StrictStr
            | StrictBool
            | Annotated[StrictInt, Field(ge=-MAX_EXACT_INT, le=MAX_EXACT_INT)],
        ],
        Field(max_length=MAX_ATTRIBUTES),
    ] = Field(default_factory=dict)
    # The read-only fields of an export, which the exact way drops, in the types it writes.
    id: int | None = None
    version: int | None = None
    created_at: str | None = None
    updated_at: str | None = None


_VALUES = operator.attrgetter(*WRITABLE)
_PRICE = WRITABLE.index("price")
_TAGS = WRITABLE.index("tags")
_ATTRIBUTES = WRITABLE.index("attributes")


def _plain_record(line: int, raw: bytes) -> Record | None:
    try:
        row = _PlainRow.model_validate_json(raw)
    except ValidationError:
        return None
    values = list(_VALUES(row))
    values[_PRICE] = Decimal(row.price).quantize(CENT)
    if row.tags:
        try:
            values[_TAGS] = _normalize_tags(row.tags)  # the schema's own rule
        except ValueError:
            return None
    values[_ATTRIBUTES] = orjson.dumps(row.attributes).decode()
    return (line, *values)


class _FastRow(ProductCreate):
    """`ProductCreate` in JSON mode, for a line `_PlainRow` may not take.

    - It takes the read-only fields of an export (which the exact way drops) only with the
      types an export writes: NaN, which the API refuses as JSON, is no int.
    - JSON mode reads a number with a fraction as a float, the API as a Decimal. Price refuses
      floats; stock and category_id would take 5.0000000000000001 as 5 where a Decimal is no
      integer, so they refuse floats here; an attribute would stay a float where the API makes
      1.0 an int, so `fast_record` refuses those.
    """

    id: int | None = None
    version: int | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @field_validator("stock", "category_id", mode="before")
    @classmethod
    def _no_float(cls, value: object) -> object:
        if isinstance(value, float):
            raise ValueError("a float: left to the exact way")
        return value


def fast_record(line: int, raw: bytes) -> Record | None:
    """The record for a line the fast path finds valid; None for the exact way to decide."""
    if b"\\u" not in raw:
        record = _plain_record(line, raw)
        if record is not None:
            return record
    try:
        product = _FastRow.model_validate_json(raw)
    except ValidationError:
        return None
    for value in product.attributes.values():
        if type(value) is float:
            return None
    return (line, *copy_values(product))
