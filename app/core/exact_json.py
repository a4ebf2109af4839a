"""JSON as the service reads request bodies and import lines: money never passes a float.

Nesting is bounded here, once, for both: the json module parses recursively (a RecursionError
deep in the stack past about 1,000 levels), orjson stops at 1,024 and pydantic's JSON parser
earlier still. No body the API accepts nests more than a few levels, so MAX_JSON_DEPTH refuses
deeper input up front, with a scan that does not recurse, before any of them sees it.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from itertools import accumulate
from typing import Any

MAX_JSON_DEPTH = 64
MAX_NUMBER_EXPONENT = 400  # past what any field holds: a float ends at 1.8e308, 5e-324
_MAX_INT_DIGITS = 40
# A string, closed or running to the end: an unclosed one is one match to the end of the text,
# not a rescan from every quote after its start.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_NOT_A_BRACKET = bytes(set(range(256)) - set(b"[]{}"))
_STEP = tuple(1 if byte in b"[{" else -1 for byte in range(256))


class Refused(json.JSONDecodeError):
    """JSON the service will not read, well-formed or not. A JSONDecodeError: FastAPI answers
    422 for a body, as for malformed JSON."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, "", 0)

    def __str__(self) -> str:
        return self.msg  # no useful position to add


class TooDeep(Refused):
    """Arrays and objects nested deeper than MAX_JSON_DEPTH."""

    def __init__(self) -> None:
        super().__init__(f"arrays and objects nested more than {MAX_JSON_DEPTH} levels deep")


def check_depth(text: str | bytes) -> None:
    """Raise `TooDeep` past MAX_JSON_DEPTH.

    Brackets inside strings are text. Linear and without recursion; counting the opening
    brackets settles nearly every input. For invalid JSON the depth it finds bounds what a
    parser would descend into before failing.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return
    brackets = _STRING.sub(b"", data).translate(None, _NOT_A_BRACKET)
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH:
        raise TooDeep


class OutOfRange:
    """A JSON number past MAX_NUMBER_EXPONENT, kept as a value that no schema field accepts: the
    answer is a 422 naming the field, like any other value PostgreSQL cannot store."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<a number past 1e{MAX_NUMBER_EXPONENT} or 1e-{MAX_NUMBER_EXPONENT}>"


OUT_OF_RANGE = OutOfRange()


def _parse_number(text: str) -> Decimal | OutOfRange:
    value = Decimal(text)
    # Cheap as a Decimal, 1e999999999 or 1e-999999999 is not once something makes it an int or
    # a ratio (pydantic does for an integer field, the schema for an attribute): minutes of CPU.
    # No field takes such a number anyway.
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and not (
        -MAX_NUMBER_EXPONENT <= exponent and value.adjusted() <= MAX_NUMBER_EXPONENT
    ):
        return OUT_OF_RANGE
    return value


def _parse_int(text: str) -> int | Decimal | OutOfRange:
    # Python refuses to parse integers of more than 4300 digits (a 400 deep inside FastAPI);
    # as a Decimal the schema's range check answers 422 like for any other out-of-range value.
    return int(text) if len(text) <= _MAX_INT_DIGITS else _parse_number(text)


def _reject_constant(name: str) -> None:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


def loads(text: str | bytes) -> Any:
    """Numbers with a fraction become Decimal, huge integers too, and numbers out of
    MAX_NUMBER_EXPONENT's range `OUT_OF_RANGE`; NaN, Infinity and nesting past MAX_JSON_DEPTH
    (`TooDeep`) are refused."""
    check_depth(text)
    return json.loads(
        text, parse_float=_parse_number, parse_int=_parse_int, parse_constant=_reject_constant
    )
