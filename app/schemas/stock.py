"""Stock adjustments: the request body and the ledger entries."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from app.schemas.base import MAX_INT, ReadSchema, Schema, Storable, Timestamp


class StockAdjust(Schema):
    # Strict: `true` or `1.0` is not a quantity.
    delta: Annotated[
        int,
        Field(
            strict=True,
            ge=-MAX_INT,
            le=MAX_INT,
            description="non-zero",
            examples=[-1],
            json_schema_extra={"not": {"const": 0}},
        ),
    ]
    reason: Annotated[str, StringConstraints(max_length=500), Storable] | None = None

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("delta must not be 0")
        return value


class StockAdjustmentRead(ReadSchema):
    id: int
    product_id: int
    user_id: int | None
    delta: int
    stock_after: int
    reason: str | None
    created_at: Timestamp
