"""Reading an import: lines, NDJSON and CSV rows, and the fast path, against the exact way."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from typing import Any

import pytest

from app.core.errors import ImportFileInvalid
from app.services import import_rows
from app.services.exporter import csv_tags
from app.services.import_rows import CsvRows, NdjsonRows
from tests.factories import product_data


async def chunks_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def all_lines(*chunks: bytes) -> list[bytes]:
    return [line async for batch in import_rows.lines_of(chunks_of(*chunks)) for line in batch]


def parse(rows: NdjsonRows | CsvRows, lines: Iterable[bytes]) -> list[tuple[int, Any]]:
    return [*rows.feed(lines), *rows.finish()]


class TestLines:
    async def test_lines_are_rejoined_across_chunks(self) -> None:
        assert await all_lines(b"ab", b"c\r\nd", b"e\n", b"", b"f") == [b"abc\r\n", b"de\n", b"f"]

    async def test_a_line_longer_than_the_limit_rejects_the_file(self) -> None:
        chunk = b"x" * (import_rows.MAX_RECORD_BYTES // 2 + 1)
        with pytest.raises(ImportFileInvalid):
            await all_lines(chunk, chunk, b"\n")


class TestNdjsonRows:
    def test_numbers_with_a_fraction_are_exact_decimals_like_the_api(self) -> None:
        [(line, row)] = parse(
            NdjsonRows(), [b'\xef\xbb\xbf{"price": 0.1, "attributes": {"w": 1.0}}']
        )
        assert line == 1
        assert row == {"price": Decimal("0.1"), "attributes": {"w": Decimal("1.0")}}

    def test_blank_lines_count_but_yield_nothing(self) -> None:
        rows = parse(NdjsonRows(), [b"\n", b"  \r\n", b'{"a": 1}\n', b"nope\n", b"\xff\n"])
        assert [line for line, _ in rows] == [3, 4, 5]
        assert rows[1][1].startswith("not valid JSON")
        assert rows[2][1] == "the line is not valid UTF-8"

    def test_huge_integers_fall_back_to_the_exact_parser(self) -> None:
        [(_, row)] = parse(NdjsonRows(), [b'{"stock": ' + b"9" * 50 + b"}"])
        assert row["stock"] == Decimal("9" * 50)


def exact_way(line: bytes) -> import_rows.Record | str:
    """What a line comes to as the API would read it: parsed with Decimals, then the schema."""
    [(number, fields)] = parse(NdjsonRows(), [line])
    return fields if isinstance(fields, str) else import_rows._to_record(number, fields)


_BASE = b'"sku": "A-1", "name": "n", "currency": "eur", "price": "1"'


class TestFastPath:
    def test_ordinary_rows_and_exported_rows_take_it(self) -> None:
        row = product_data(category_id=3)
        exported = {**row, "id": 7, "version": 2, "created_at": "2026-01-01T00:00:00.000000Z"}
        for line in (json.dumps(row).encode(), json.dumps(exported).encode()):
            record = import_rows._fast_record(1, line)
            assert record is not None
            assert record == exact_way(line)

    @pytest.mark.parametrize(
        "fields",
        [
            # JSON the API refuses, in a field the exact way drops or a field that takes it.
            b'"id": NaN',
            b'"version": Infinity',
            b'"stock": NaN',
            b'"id": 1e999',
            b'"name": "a\x01b"',
            b'"id": [1,]',
            # Floats: the API reads Decimals.
            b'"stock": 5.0000000000000001',
            b'"category_id": 2.0000000000000001',
            b'"stock": 5.0',
            b'"stock": -0.0',
            b'"attributes": {"k": 1.0}',
            b'"attributes": {"k": 1E2}',
            b'"attributes": {"k": 0.1}',
            b'"price": 1e2, "sku": "A-2"',
            # What the schema coerces the same way in both modes.
            b'"stock": "5"',
            b'"stock": true',
            b'"category_id": "7"',
            b'"stock": -0',
            b'"attributes": {"a": 9007199254740992, "b": true, "c": "x"}',
            b'"attributes": {"a": 9007199254740993}',
            b'"name": "x", "name": "y"',
            b'"tags": ["B", "b", " c "], "tags": ["z"]',
            b'"id": "7", "created_at": 5',
            b'"id": 7, "version": 2, "created_at": "x", "updated_at": null',
            b'"description": "\\u0000"',
            b'"name": "\\ud800"',
            b'"extra": 1',
        ],
    )
    def test_says_yes_only_to_what_the_exact_way_reads_the_same(self, fields: bytes) -> None:
        line = b"{" + _BASE + b", " + fields + b"}"
        [(_, checked)] = NdjsonRows().check([line])
        assert checked == exact_way(line)
        record = import_rows._fast_record(1, line)
        assert record is None or repr(record) == repr(exact_way(line))


class TestCsvRows:
    HEADER = b"id,sku,name,price,currency,tags,attributes,stock\r\n"

    def test_a_quoted_newline_keeps_the_record_whole_and_its_first_line(self) -> None:
        lines = [
            self.HEADER,
            b'1,A-1,"multi\r\n',
            b'line ""name""",1.00,EUR,a|b,"{""k"": 0.5}",\r\n',
            b"2,A-2,n,2,EUR,,,\r\n",
        ]
        rows = parse(CsvRows(), lines)
        assert rows == [
            (
                2,
                {
                    "sku": "A-1",
                    "name": 'multi\r\nline "name"',
                    "price": "1.00",
                    "currency": "EUR",
                    "tags": ["a", "b"],
                    "attributes": {"k": Decimal("0.5")},
                },
            ),
            (
                4,
                {
                    "sku": "A-2",
                    "name": "n",
                    "price": "2",
                    "currency": "EUR",
                    "tags": [],
                    "attributes": {},
                },
            ),
        ]

    def test_a_stray_quote_in_an_unquoted_field_is_text_as_for_the_csv_module(self) -> None:
        lines = [self.HEADER, b'1,A-1,12" pizza,1,EUR,,,\r\n', b"2,A-2,n,2,EUR,,,\r\n"]
        rows = parse(CsvRows(), lines)
        assert [(line, row["name"]) for line, row in rows] == [(2, '12" pizza'), (3, "n")]

    @pytest.mark.parametrize(
        ("line", "quoted", "expected"),
        [
            (b"a,b,c\r\n", False, False),
            (b'a,"b\r\n', False, True),
            (b'a,"b""\r\n', False, True),
            (b'a,"b""",c\r\n', False, False),
            (b'end"",x\r\n', True, True),
            (b'end",x\r\n', True, False),
            (b'""\r\n', True, True),
            (b'a,b"c,"d\r\n', False, True),
        ],
    )
    def test_quoted_state_at_the_end_of_a_line(
        self, line: bytes, quoted: bool, expected: bool
    ) -> None:
        assert import_rows._ends_quoted(line, quoted) is expected

    def test_an_unclosed_quote_is_reported_at_its_line(self) -> None:
        rows = parse(CsvRows(), [self.HEADER, b'1,A-1,"never closed,1,EUR,,,\r\n', b"more\r\n"])
        assert rows == [(2, "malformed CSV: a quoted field is never closed")]

    @pytest.mark.parametrize(
        ("header", "message"),
        [
            (b"sku,name,price,currency,color\r\n", "Unknown CSV column(s): color"),
            (b"sku,name,price\r\n", "Missing CSV column(s): currency"),
            (b"sku,sku,name,price,currency\r\n", "A CSV column appears twice in the header"),
        ],
    )
    def test_a_bad_header_rejects_the_file(self, header: bytes, message: str) -> None:
        with pytest.raises(ImportFileInvalid) as raised:
            parse(CsvRows(), [header])
        assert raised.value.detail == message

    @pytest.mark.parametrize(
        "tags", [[], ["a"], ["a", "b"], ["a|b"], ["[x"], ["[", "y"], ["x", "[y"], ['q"uote']]
    )
    def test_tags_written_by_the_exporter_read_back_the_same(self, tags: list[str]) -> None:
        assert import_rows._csv_tags(csv_tags(tags)) == tags
