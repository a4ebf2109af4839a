"""The import's fast path says yes only to what the exact way reads the same."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.schemas.product import ProductCreate, ProductStatus
from app.services import import_fast
from app.services.import_rows import NdjsonRows, Record, _to_record
from app.services.product_columns import READ_ONLY
from tests.factories import product_data


def exact_way(line: bytes) -> Record | str:
    """What a line comes to as the API would read it: parsed with Decimals, then the schema."""
    [(number, fields)] = NdjsonRows().feed([line])
    return fields if isinstance(fields, str) else _to_record(number, fields)


def assert_agrees(line: bytes) -> Record | None:
    record = import_fast.fast_record(1, line)
    if record is not None:
        assert repr(record) == repr(exact_way(line)), line
    return record


# Characters where the two ways could part: whitespace Python strips and pydantic may not,
# case that lowercasing folds, escapes, NUL, a lone surrogate, multi-byte text.
_CHARS = st.sampled_from(
    [
        *"aZ09-._ |",
        *("\t", "\n", "\x1c", "\x85", "\xa0", "\u2028", "\u3000", "É", "ß", "İ", "€"),
        *("\x00", "\x7f", "\ud800", "\U0001f600", '"', "\\"),
    ]
)
_TEXT = st.text(_CHARS, max_size=12) | st.sampled_from(["a" * n for n in (40, 41, 64, 65, 100)])
_LONG = st.sampled_from(["n" * 200, " " + "n" * 200, "n" * 201, "d" * 10_000, "d" * 10_001])
_NUMBER = st.integers(-(2**64), 2**64) | st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1])
_FLOAT = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1.0, 0.1, -0.0])
_SCALAR = _TEXT | _NUMBER | _FLOAT | st.booleans() | st.none()
_PRICE = (
    st.from_regex(r"-?[0-9]{0,12}(\.[0-9]{0,3})?", fullmatch=True)
    | st.sampled_from(["9999999999.99", "10000000000", "1e2", " 1.00", "1_000", "0.10", "NaN"])
    | _SCALAR
)
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "sku": st.from_regex(r"[A-Za-z0-9._-]{1,3}", fullmatch=True) | _TEXT,
    "name": _TEXT | _LONG,
    "description": _TEXT | _LONG,
    "price": _PRICE,
    "currency": st.sampled_from(["EUR", "eur", "eU", "EURO", "€UR", "E1R"]) | _SCALAR,
    "stock": _NUMBER | _SCALAR,
    "status": st.sampled_from([*ProductStatus, "Active", ""]) | _SCALAR,
    "category_id": _NUMBER | _SCALAR,
    "tags": st.lists(_TEXT | st.sampled_from(["Gift", "gift", " gift "]), max_size=22) | _SCALAR,
    "attributes": st.dictionaries(_TEXT, _SCALAR, max_size=6)
    | st.dictionaries(st.text("abc", min_size=1, max_size=4), st.integers(), min_size=51)
    | _SCALAR,
    "id": _NUMBER | _SCALAR,
    "version": _NUMBER | _SCALAR,
    "created_at": _TEXT | _SCALAR,
    "updated_at": _TEXT | _SCALAR,
    "extra": _SCALAR,
}
_VALID = {"sku": "A-1", "name": "n", "price": "1.50", "currency": "eur"}


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    row: dict[str, Any] = dict(_VALID) if draw(st.booleans()) else {}
    for name in draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=6, unique=True)):
        row[name] = draw(_FIELDS[name])
    text = json.dumps(row, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


class TestFastPath:
    @settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(lines())
    def test_generated_lines_agree_with_the_exact_way(self, line: bytes) -> None:
        assert_agrees(line)

    def test_ordinary_and_exported_rows_take_the_plain_model(self) -> None:
        row = product_data(category_id=3, tags=["Gift", "gift", " New "])
        row["attributes"] = {"color": "red", "weight_g": 1200, "fragile": True}
        exported = {**row, "id": 7, "version": 2, "created_at": "2026-01-01T00:00:00.000000Z"}
        for fields in (row, exported):
            line = json.dumps(fields, ensure_ascii=False).encode()
            record = import_fast._plain_record(1, line)
            assert record is not None
            assert repr(record) == repr(exact_way(line))

    def test_a_line_with_an_escape_takes_the_schema_itself(self) -> None:
        nul = json.dumps({**_VALID, "description": "a\x00b"}).encode()
        assert b"\\u0000" in nul
        assert assert_agrees(nul) is None
        accented = json.dumps({**_VALID, "name": "Café"}).encode()  # "Caf\u00e9"
        assert assert_agrees(accented) is not None

    @pytest.mark.parametrize(
        "fields",
        [
            {"tags": [f"t{n}" for n in range(21)]},
            {"attributes": {"a": 2**53 + 1}},
            {"attributes": {f"k{n}": n for n in range(51)}},
            {"attributes": {"a": -(2**53) - 1}},
            {"price": "12345678901"},
            {"price": "1.005"},
            {"stock": 2**31},
            {"category_id": 0},
        ],
    )
    def test_what_the_schema_refuses_goes_the_exact_way(self, fields: dict[str, Any]) -> None:
        line = json.dumps({**_VALID, **fields}).encode()
        assert import_fast._plain_record(1, line) is None
        assert isinstance(exact_way(line), str)

    def test_the_plain_model_has_the_schemas_fields(self) -> None:
        expected = [*ProductCreate.model_fields, *READ_ONLY]
        assert sorted(import_fast._PlainRow.model_fields) == sorted(expected)
        assert set(get_args(import_fast.StatusValue)) == {status.value for status in ProductStatus}
