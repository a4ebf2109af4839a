"""JSON as the service reads request bodies and import lines: money never passes a float."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

_MAX_INT_DIGITS = 40


def _parse_int(text: str) -> int | Decimal:
    # Python refuses to parse integers of more than 4300 digits (a 400 deep inside FastAPI);
    # as a Decimal the schema's range check answers 422 like for any other out-of-range value.
    return int(text) if len(text) <= _MAX_INT_DIGITS else Decimal(text)


def _reject_constant(name: str) -> None:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


def loads(text: str | bytes) -> Any:
    """Numbers with a fraction become Decimal, huge integers too; NaN and Infinity are refused."""
    return json.loads(
        text, parse_float=Decimal, parse_int=_parse_int, parse_constant=_reject_constant
    )
