"""A keyset cursor's values: JSON-safe forms on the way out, typed again on the way in."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from app.core.errors import Unprocessable


def cursor_value(value: Any) -> Any:
    # JSON-safe forms that PostgreSQL casts back exactly.
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


_FROM_CURSOR: dict[str, Any] = {
    "bigint": int,
    "timestamptz": datetime.fromisoformat,
    "numeric": Decimal,
    "real": float,
    "text": str,
}


def key(values: list[Any], *casts: str) -> tuple[Any, ...]:
    """A decoded cursor's values, typed; the last one is always a product id."""
    invalid = Unprocessable("The cursor is invalid", loc=["query", "cursor"])
    if len(values) != len(casts) + 1 or not isinstance(values[-1], int):
        raise invalid
    typed: list[Any] = []
    for raw, cast in zip(values, casts, strict=False):
        if raw is None:
            typed.append(None)
            continue
        if isinstance(raw, (list, dict, bool)):
            raise invalid
        try:
            typed.append(_FROM_CURSOR[cast](raw))
        except (TypeError, ValueError, ArithmeticError):
            raise invalid from None
    return (*typed, values[-1])
