"""Reading an import: lines, NDJSON and CSV rows, and the fast path, against the exact way."""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from typing import Any

import pytest

from app.core import exact_json
from app.core.errors import ImportFileInvalid
from app.core.exact_json import MAX_JSON_DEPTH
from app.services import import_rows
from app.services.exporter import csv_tags
from app.services.import_rows import BOM, CsvRows, NdjsonRows
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

    async def test_a_line_longer_than_the_limit_is_cut_and_the_next_one_kept(self) -> None:
        chunk = b"x" * (import_rows.MAX_RECORD_BYTES // 2 + 1)
        lines = await all_lines(b"a\n", chunk, chunk, chunk, b"tail\nb\n", b"c")
        assert lines == [b"a\n", b"x" * (import_rows.MAX_RECORD_BYTES + 1) + b"\n", b"b\n", b"c"]


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


def deep(levels: int, opening: bytes = b"[", closing: bytes = b"]") -> bytes:
    return opening * levels + closing * levels


class TestNestingLimit:
    @pytest.mark.parametrize(
        "text",
        [
            deep(MAX_JSON_DEPTH),
            b'{"a": ' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH,
            b'["' + b"[" * 5000 + b'"]',  # brackets in a string are text
            b'["\\"' + b"{" * 5000 + b'"]',  # so are they after an escaped quote
            "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH,
        ],
    )
    def test_up_to_the_limit_is_read(self, text: str | bytes) -> None:
        exact_json.check_depth(text)
        assert exact_json.loads(text) is not None

    @pytest.mark.parametrize(
        "text",
        [
            deep(MAX_JSON_DEPTH + 1),
            deep(5000),
            b"[" * 5000,  # never closed: the parser would still descend
            deep(3000, b'{"a":', b"}"),
            b'["x", ' + deep(1025) + b"]",  # past orjson's own limit
            b'"\\\\"' + deep(100),  # the escaped backslash ends the string before the brackets
            "[" * 5000 + "\ud800",
        ],
    )
    def test_deeper_is_too_deep_without_recursion(self, text: str | bytes) -> None:
        with pytest.raises(exact_json.TooDeep) as raised:
            exact_json.loads(text)
        assert isinstance(raised.value, json.JSONDecodeError)  # so FastAPI answers 422
        assert (
            str(raised.value) == f"arrays and objects nested more than {MAX_JSON_DEPTH} levels deep"
        )

    def test_an_unclosed_string_full_of_quotes_is_scanned_in_linear_time(self) -> None:
        text = b'["' + b'\\"' * 300_000 + deep(100)
        started = time.perf_counter()
        with pytest.raises(exact_json.TooDeep):
            exact_json.check_depth(text + b'"]' + deep(100))
        exact_json.check_depth(text)  # the brackets are inside the unclosed string
        assert time.perf_counter() - started < 2  # a rescan from each quote takes minutes

    def test_an_ndjson_line_too_deep_is_a_row_error(self) -> None:
        row = json.dumps(product_data()).encode()
        for levels in (MAX_JSON_DEPTH + 1, 200, 1025, 5000):
            line = row[:-1] + b', "attributes": {"k": ' + deep(levels) + b"}}"
            [(number, checked)] = NdjsonRows().check([b"\n", line])
            assert (number, checked) == (2, exact_json.TooDeep().msg)

    @pytest.mark.parametrize("column", ["attributes", "tags"])
    def test_a_csv_cell_too_deep_is_a_row_error_naming_the_column(self, column: str) -> None:
        cell = b'"' + deep(3000) + b'"'
        rows = [
            *CsvRows().check(
                [
                    b"sku,name,price,currency," + column.encode() + b"\n",
                    b"A-1,n,1,EUR," + cell + b"\n",
                    b"A-2,n,1,EUR,\n",
                ]
            )
        ]
        assert rows[0] == (2, f"{column}: {exact_json.TooDeep().msg}")
        assert rows[1][0] == 3
        assert not isinstance(rows[1][1], str)


def _spliced(sku: str, fields: bytes) -> bytes:
    """A valid row's JSON with `fields` added at the end (a repeated key: the last one wins)."""
    return json.dumps(product_data(sku=sku)).encode()[:-1] + b", " + fields + b"}"


# Each is a line a valid row would be but for one thing; none may import.
NDJSON_MALFORMED: tuple[Callable[[str], bytes], ...] = (
    lambda sku: _spliced(sku, b'"attributes": ' + deep(5000)),
    lambda sku: _spliced(sku, b'"attributes": {"k": ' + deep(MAX_JSON_DEPTH) + b"}"),
    lambda sku: _spliced(sku, b'"tags": ' + b"[" * 3000),
    lambda sku: _spliced(sku, b'"name": "\xff\xfe"'),
    lambda sku: _spliced(sku, b'"name": "\xed\xa0\x80"'),  # a surrogate, UTF-8 encoded
    lambda sku: _spliced(sku, b'"name": "a\x00b"'),
    lambda sku: _spliced(sku, b'"description": "a\\u0000b"'),
    lambda sku: _spliced(sku, b'"name": "\\ud800"'),
    lambda sku: _spliced(sku, b'"attributes": {"\\udc00": 1}'),
    lambda sku: _spliced(sku, b'"attributes": {"k": "x\\ud800"}'),
    lambda sku: _spliced(sku, b'"tags": ["\\udfff"]'),
    lambda sku: _spliced(sku, b'"stock": 18446744073709551616'),
    lambda sku: _spliced(sku, b'"category_id": 9223372036854775808'),
    lambda sku: _spliced(sku, b'"attributes": {"k": 36893488147419103232}'),
    lambda sku: _spliced(sku, b'"stock": ' + b"9" * 5000),
    lambda sku: _spliced(sku, b'"price": 1e999999'),
    lambda sku: _spliced(sku, b'"stock": 1e999999999'),
    lambda sku: _spliced(sku, b'"stock": 1e-999999999'),
    lambda sku: _spliced(sku, b'"category_id": -1e999999'),
    lambda sku: _spliced(sku, b'"attributes": {"k": 1e999999}'),
    lambda sku: _spliced(sku, b'"attributes": {"k": NaN}'),
    lambda sku: _spliced(sku, b'"price": Infinity'),
    lambda sku: _spliced(sku, b'"price": -0.001'),
    lambda sku: _spliced(sku, b'"price": true'),
    lambda sku: _spliced(sku, b'"stock": "many"'),
    lambda sku: _spliced(sku, b'"status": "gone"'),
    lambda sku: _spliced(sku, b'"tags": "a|b"'),
    lambda sku: _spliced(sku, b'"tags": [1, {}]'),
    lambda sku: _spliced(sku, b'"attributes": []'),
    lambda sku: _spliced(sku, b'"attributes": {"k": {"nested": 1}}'),
    lambda sku: _spliced(sku, b'"attributes": {"k": [1]}'),
    lambda sku: _spliced(
        sku, b'"attributes": ' + json.dumps({f"k{i}": i for i in range(51)}).encode()
    ),
    lambda sku: _spliced(sku, b'"unknown": 1'),
    lambda sku: _spliced(sku, b'"sku": null'),
    lambda sku: _spliced(sku, b'"price": 1,'),
    lambda sku: _spliced(sku, b'"name": "a\x01b"'),  # a raw control character
    lambda sku: json.dumps(product_data(sku=sku)).encode()[:-5],  # cut short
    lambda sku: json.dumps(product_data(sku=sku)).encode() + b" trailing",
    lambda sku: json.dumps(product_data(sku=sku)).encode() + b"\r" + b"{}",  # a lone CR
    lambda sku: json.dumps([product_data(sku=sku)]).encode(),
    lambda sku: f'"{sku}"'.encode(),
    lambda sku: b"null",
    lambda sku: b"12",
    lambda sku: b"\x00",
    lambda sku: b"\xef\xbb",
    lambda sku: _spliced(sku, b'"description": "' + b"x" * import_rows.MAX_RECORD_BYTES + b'"'),
)


NDJSON_VALID: tuple[Callable[[str], bytes], ...] = (
    lambda sku: json.dumps(product_data(sku=sku)).encode(),
    lambda sku: b" \t" + json.dumps(product_data(sku=sku)).encode() + b"\t ",
    # As json.loads reads a request body, so any line: a BOM is no character of the JSON.
    lambda sku: BOM + json.dumps(product_data(sku=sku)).encode(),
    lambda sku: json.dumps(product_data(sku=sku, name="\ud83d\ude00 \u00e9")).encode(),
    lambda sku: _spliced(sku, b'"attributes": {"k": 1.5e-300, "j": 1e-400}'),
)


def _cell(value: str) -> bytes:
    return ('"' + value.replace('"', '""') + '"').encode()


_CSV_COLUMNS = (b"sku", b"name", b"price", b"currency", b"stock", b"category_id", b"tags")
_CSV_COLUMNS += (b"attributes",)
CSV_HEADER = b",".join(_CSV_COLUMNS) + b"\r\n"


def _csv_row(sku: str, **cells: bytes) -> bytes:
    row = {b"sku": sku.encode(), b"name": b"n", b"price": b"1.50", b"currency": b"EUR"}
    row |= {b"stock": b"3", b"category_id": b"", b"tags": b"a|b", b"attributes": b'"{""k"": 1}"'}
    row |= {name.encode(): cell for name, cell in cells.items()}
    return b",".join(row[name] for name in _CSV_COLUMNS) + b"\r\n"


CSV_MALFORMED: tuple[Callable[[str], bytes], ...] = (
    lambda sku: _csv_row(sku, attributes=_cell("[" * 3000 + "]" * 3000)),
    lambda sku: _csv_row(sku, attributes=_cell('{"k": ' + "[" * 65 + "]" * 65 + "}")),
    lambda sku: _csv_row(sku, tags=_cell("[" * 3000)),
    lambda sku: _csv_row(sku, attributes=_cell('{"k": 1e999999999}')),
    lambda sku: _csv_row(sku, attributes=_cell('{"k": 1e-999999999}')),
    lambda sku: _csv_row(sku, attributes=_cell('{"\\ud800": 1}')),
    lambda sku: _csv_row(sku, attributes=_cell('{"k": "\\u0000"}')),
    lambda sku: _csv_row(sku, attributes=_cell("[1, 2]")),
    lambda sku: _csv_row(sku, attributes=_cell("{not json")),
    lambda sku: _csv_row(sku, attributes=_cell('{"k": {"a": 1}}')),
    lambda sku: _csv_row(sku, tags=_cell("[1, null]")),
    lambda sku: _csv_row(sku, tags=_cell('["\\udc00"]')),
    lambda sku: _csv_row(sku, name=b"a\x00b"),
    lambda sku: _csv_row(sku, name=b"\xff"),
    lambda sku: _csv_row(sku, name=b"\xed\xb0\x80"),
    lambda sku: _csv_row(sku, name=b"a\rb"),  # a CR in an unquoted field
    lambda sku: _csv_row(sku, name=b'"quoted"after'),
    lambda sku: _csv_row(sku, name=b""),
    lambda sku: _csv_row(sku, stock=b"18446744073709551616"),
    lambda sku: _csv_row(sku, stock=b"9" * 5000),
    lambda sku: _csv_row(sku, stock=b"1e999999999"),
    lambda sku: _csv_row(sku, stock=b"-1"),
    lambda sku: _csv_row(sku, category_id=b"9223372036854775808"),
    lambda sku: _csv_row(sku, category_id=b"x"),
    lambda sku: _csv_row(sku, price=b"1e999999999"),
    lambda sku: _csv_row(sku, price=b"NaN"),
    lambda sku: _csv_row(sku, price=b"1.001"),
    lambda sku: _csv_row(sku, currency=b"EURO"),
    lambda sku: _csv_row(sku)[:-2] + b",extra\r\n",
    lambda sku: _csv_row(sku).split(b",", 1)[1],  # a cell short
    lambda sku: BOM + _csv_row(sku),  # a BOM past line 1: part of the SKU
    lambda sku: _csv_row(sku, name=b"x" * (import_rows.MAX_RECORD_BYTES + 1)),
)


def malformed_file(
    rng: random.Random, rows: int, fmt: str
) -> tuple[bytes, dict[int, str], set[int]]:
    """A file of valid and malformed rows at random: (body, line -> SKU of each valid row,
    the malformed rows' lines). Blank lines, CRLF and a leading BOM come at random too."""
    malformed = NDJSON_MALFORMED if fmt == "ndjson" else CSV_MALFORMED
    lines = [CSV_HEADER] if fmt == "csv" else []
    valid: dict[int, str] = {}
    bad: set[int] = set()
    for _ in range(rows):
        sku = f"FZ-{rng.randrange(10**9):09d}-{len(lines)}"
        if rng.random() < 0.1:
            lines.append(rng.choice([b"\n", b"\r\n", b"  \t\r\n"]))
            continue
        if rng.random() < 0.5:
            bad.add(len(lines) + 1)
            line = rng.choice(malformed)(sku)
        else:
            valid[len(lines) + 1] = sku
            line = _csv_row(sku) if fmt == "csv" else rng.choice(NDJSON_VALID)(sku)
        lines.append(line.rstrip(b"\r\n") + rng.choice([b"\n", b"\r\n"]))
    if rng.random() < 0.5:
        lines[0] = BOM + lines[0]
    return b"".join(lines), valid, bad


async def _split_at_random(rng: random.Random, body: bytes) -> AsyncIterator[bytes]:
    at = 0
    while at < len(body):
        size = rng.choice([1, 7, 4096, 65536, 2**20, 2**21])
        yield body[at : at + size]
        at += size


async def checked_rows(rows: NdjsonRows | CsvRows, chunks: AsyncIterator[bytes]) -> list[Any]:
    checked = [row async for lines in import_rows.lines_of(chunks) for row in rows.check(lines)]
    return [*checked, *rows.finish()]


class TestMalformedInput:
    @pytest.mark.parametrize("fmt", ["ndjson", "csv"])
    @pytest.mark.parametrize("seed", range(6))
    async def test_each_malformed_row_fails_at_its_line_and_the_others_are_read(
        self, fmt: str, seed: int
    ) -> None:
        rng = random.Random(seed)
        body, valid, bad = malformed_file(rng, 60, fmt)
        rows = NdjsonRows() if fmt == "ndjson" else CsvRows()
        checked = await checked_rows(rows, _split_at_random(rng, body))
        failed = {line for line, record in checked if isinstance(record, str)}
        read = {line: record[1] for line, record in checked if not isinstance(record, str)}
        assert (failed, read) == (bad, valid)

    @pytest.mark.parametrize("fmt", ["ndjson", "csv"])
    def test_every_malformed_variant_fails_alone(self, fmt: str) -> None:
        for make in NDJSON_MALFORMED if fmt == "ndjson" else CSV_MALFORMED:
            rows = NdjsonRows() if fmt == "ndjson" else CsvRows()
            lines = [CSV_HEADER] if fmt == "csv" else []
            checked = [*rows.check([*lines, make("FZ-1") + b"\n"]), *rows.finish()]
            assert len(checked) == 1
            assert isinstance(checked[0][1], str), make("FZ-1")[:200]

    @pytest.mark.parametrize("fmt", ["ndjson", "csv"])
    @pytest.mark.parametrize("seed", range(4))
    async def test_random_bytes_in_valid_rows_never_escape_as_an_exception(
        self, fmt: str, seed: int
    ) -> None:
        rng = random.Random(seed)
        alphabet = b'[]{}",:\\ \r\x00\x01\x7f\x80\xc3\xed\xa0\xef\xbb\xbf0e-.u|ntfNI'
        lines = [CSV_HEADER] if fmt == "csv" else []
        for number in range(300):
            row = _csv_row(f"R-{number}") if fmt == "csv" else _spliced(f"R-{number}", b'"x": 1')
            row = bytearray(row.rstrip(b"\r\n"))
            for _ in range(rng.randrange(1, 4)):
                at = rng.randrange(len(row) + 1)
                if rng.random() < 0.3 and at < len(row):
                    del row[at]
                else:
                    row[at:at] = bytes([rng.choice(alphabet)])
            lines.append(bytes(row) + b"\n")
        rows = NdjsonRows() if fmt == "ndjson" else CsvRows()
        checked = await checked_rows(rows, _split_at_random(rng, b"".join(lines)))
        numbers = [line for line, _ in checked]
        assert numbers == sorted(set(numbers))
        assert all(1 <= line <= len(lines) for line in numbers)
        if fmt == "ndjson":  # no quotes to open: each line is a row of its own
            assert len(numbers) == len(lines)


class TestUnclosedQuotes:
    def test_at_the_end_fails_its_line_and_the_rows_before_are_read(self) -> None:
        rows = parse(CsvRows(), [CSV_HEADER, _csv_row("A-1"), b'A-2,"open\r\n', b"a,b\r\n"])
        assert [line for line, _ in rows] == [2, 3]
        assert rows[1] == (3, "malformed CSV: a quoted field is never closed")

    def test_past_the_record_limit_fails_and_reading_goes_on_at_the_next_line(self) -> None:
        filler = b"x" * (import_rows.MAX_RECORD_BYTES // 4) + b"\n"
        lines = [CSV_HEADER, b'A-1,"open\r\n', *[filler] * 4, _csv_row("A-2")]
        checked = [*CsvRows().check(lines)]
        assert checked[0] == (
            2,
            f"the record is longer than {import_rows.MAX_RECORD_BYTES} bytes (an unclosed quote?)",
        )
        assert [(line, record[1]) for line, record in checked[1:]] == [(7, "A-2")]
