"""Reading an import: the body's lines into validated rows, one record per product.

- Each NDJSON line, or CSV record after the header, is validated with `ProductCreate`, the
  schema of `POST /products`. The read-only fields of an export (id, version, created_at,
  updated_at) are ignored, so an export imports back as it is. (An NDJSON line is first tried
  straight from its bytes, see `_FastRow`; the errors always come from the exact way.)
- Lines count from 1, blank lines included; a CSV header is line 1, and a CSV record that spans
  lines (a quoted newline) is reported at the line where it starts.
- Whatever is wrong with a line or record is a row error at its line, and the next line is read
  as usual: malformed JSON or CSV, invalid UTF-8, nesting past `exact_json.MAX_JSON_DEPTH`, a
  line or record over MAX_RECORD_BYTES (its rest is skipped unread; for a quoted field that
  never closes, reading goes on at the line after the one that passed the limit). Only a bad
  CSV header rejects the file.

CSV: UTF-8 (a leading BOM is allowed), comma-separated, RFC 4180 quoting. The header names the
columns in any order: sku, name, price and currency are required; description, stock, status,
category_id, tags and attributes are optional; id, version, created_at and updated_at are
ignored. `tags` is `a|b|c`, or a JSON array when a tag itself contains `|`; `attributes` is a
JSON object. An empty cell means the field's default: "" for description, 0 for stock, draft
for status, null for category_id, no tags, no attributes.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import orjson
from pydantic import ValidationError, field_validator

from app.core import exact_json
from app.core.errors import ImportFileInvalid
from app.schemas.product import ProductCreate
from app.services.product_columns import READ_ONLY, WRITABLE, copy_values

READ_ONLY_FIELDS = frozenset(READ_ONLY)
MAX_RECORD_BYTES = 1024 * 1024
BOM = b"\xef\xbb\xbf"
_MAX_DETAIL = 500
RECORD_COLUMNS = ("line", *WRITABLE)

Parsed = tuple[int, dict[str, Any] | str]  # (line, fields) or (line, what is wrong)
Record = tuple[Any, ...]  # a valid row, in RECORD_COLUMNS order
Checked = tuple[int, Record | str]  # (line, record) or (line, what is wrong)


async def lines_of(chunks: AsyncIterable[bytes]) -> AsyncIterator[list[bytes]]:
    """The body's lines, a chunk's worth at a time, each ending in b"\\n" but the last.

    A line longer than MAX_RECORD_BYTES may come cut to MAX_RECORD_BYTES + 1 bytes (still too
    long, for the row readers to report): memory stays bounded however long it is.
    """
    buffer = b""
    skipping = False  # inside a line already cut: drop bytes up to its end
    async for chunk in chunks:
        if skipping:
            end = chunk.find(b"\n")
            if end == -1:
                continue
            chunk, skipping = chunk[end:], False
        buffer += chunk
        if b"\n" in chunk:
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            yield [line + b"\n" for line in lines]
        if len(buffer) > MAX_RECORD_BYTES:
            buffer, skipping = buffer[: MAX_RECORD_BYTES + 1], True
    if buffer:
        yield [buffer]


def _has_float(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if any(type(item) is float for item in value.values()):
        return True
    attributes = value.get("attributes")
    return isinstance(attributes, dict) and any(type(v) is float for v in attributes.values())


def _json_row(raw: bytes) -> Any:
    # orjson is several times faster; fall back to the exact parser whenever orjson made a float
    # (money must never pass through one; nor integers past 64 bits, which orjson turns into
    # floats) or refused the line. The depth check first: orjson would take 1,024 levels.
    exact_json.check_depth(raw)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return exact_json.loads(raw)
    return exact_json.loads(raw) if _has_float(value) else value


def _too_long(what: str) -> str:
    return f"the {what} is longer than {MAX_RECORD_BYTES} bytes"


class NdjsonRows:
    def __init__(self) -> None:
        self.line = 0

    def _raw(self, lines: Iterable[bytes]) -> Iterator[tuple[int, bytes | None]]:
        """Each non-blank line, stripped; None for one too long to read."""
        for raw in lines:
            self.line += 1
            if len(raw) > MAX_RECORD_BYTES + 1:  # + 1: its b"\n"
                yield self.line, None
                continue
            if self.line == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            raw = raw.strip()
            if raw:
                yield self.line, raw

    def feed(self, lines: Iterable[bytes]) -> Iterator[Parsed]:
        """Each line parsed as the API parses a request body."""
        for line, raw in self._raw(lines):
            yield line, _too_long("line") if raw is None else _ndjson_fields(raw)

    def check(self, lines: Iterable[bytes]) -> Iterator[Checked]:
        """Each line validated: by the fast path if it says yes, else parsed as by `feed`."""
        for line, raw in self._raw(lines):
            if raw is None:
                yield line, _too_long("line")
                continue
            record = _fast_record(line, raw)
            if record is not None:
                yield line, record
                continue
            fields = _ndjson_fields(raw)
            yield line, fields if isinstance(fields, str) else _to_record(line, fields)

    def finish(self) -> Iterator[tuple[int, str]]:
        return iter(())


def _ndjson_fields(raw: bytes) -> dict[str, Any] | str:
    try:
        value = _json_row(raw)
    except UnicodeDecodeError:
        return "the line is not valid UTF-8"
    except exact_json.Refused as error:
        return error.msg
    except ValueError as error:
        return f"not valid JSON: {str(error)[:200]}"
    if not isinstance(value, dict):
        return "each line must be a JSON object"
    return value


def _csv_tags(cell: str) -> Any:
    if cell.lstrip().startswith("["):
        try:
            return exact_json.loads(cell)
        except exact_json.Refused:
            raise
        except ValueError:
            return cell  # the schema says what is wrong with it
    return cell.split("|") if cell else []


def _csv_attributes(cell: str) -> Any:
    if not cell.strip():
        return {}
    try:
        return exact_json.loads(cell)
    except exact_json.Refused:
        raise
    except ValueError:
        return cell


_CSV_CELL: dict[str, Callable[[str], Any]] = {
    "tags": _csv_tags,
    "attributes": _csv_attributes,
    "category_id": lambda cell: cell or None,
}
_CSV_DEFAULT_WHEN_EMPTY = frozenset({"stock", "status"})


def _ends_quoted(line: bytes, quoted: bool) -> bool:
    """Whether a CSV record is still inside a quoted field at the end of `line`.

    As Python's csv module reads it: a quote opens a field only at the field's start, `""`
    inside a quoted field is a quote, and a quote anywhere else in an unquoted field is text.
    (0x22 never occurs inside a multi-byte UTF-8 sequence, so bytes are safe to scan.)
    """
    at = line.find(b'"')
    while at != -1:
        if quoted:
            if line[at + 1 : at + 2] == b'"':
                at += 1
            else:
                quoted = False
        elif at == 0 or line[at - 1 : at] == b",":
            quoted = True
        at = line.find(b'"', at + 1)
    return quoted


class CsvRows:
    """CSV records, each ending at a line break outside a quoted field."""

    def __init__(self) -> None:
        self.line = 0
        self.header: list[str] | None = None
        self.pending: list[bytes] = []
        self.pending_start = 0
        self.pending_size = 0
        self.quoted = False

    def feed(self, lines: Iterable[bytes]) -> Iterator[Parsed]:
        for raw in lines:
            self.line += 1
            if not self.pending:
                self.pending_start = self.line
            self.pending.append(raw)
            self.pending_size += len(raw)
            self.quoted = _ends_quoted(raw, self.quoted)
            too_long = self.pending_size > MAX_RECORD_BYTES + 1  # + 1: its b"\n"
            if self.quoted and not too_long:
                continue
            record = b"".join(self.pending)
            self.pending, self.pending_size = [], 0
            if not too_long:
                yield from self._record(self.pending_start, record)
            elif self.header is None:
                raise ImportFileInvalid(f"The CSV header is longer than {MAX_RECORD_BYTES} bytes")
            else:
                # A quote that never closes would take the rest of the file: reading goes on
                # at the next line, as if it had closed.
                unclosed = " (an unclosed quote?)" if self.quoted else ""
                self.quoted = False
                yield self.pending_start, _too_long("record") + unclosed

    def check(self, lines: Iterable[bytes]) -> Iterator[Checked]:
        """Each record validated with the schema."""
        for line, fields in self.feed(lines):
            yield line, fields if isinstance(fields, str) else _to_record(line, fields)

    def finish(self) -> Iterator[tuple[int, str]]:
        if self.pending:
            yield self.pending_start, "malformed CSV: a quoted field is never closed"

    def _record(self, line: int, record: bytes) -> Iterator[Parsed]:
        if line == 1 and record.startswith(BOM):
            record = record[len(BOM) :]
        try:
            text = record.decode()
        except UnicodeDecodeError:
            if self.header is None:
                raise ImportFileInvalid("The CSV header is not valid UTF-8") from None
            yield line, "the record is not valid UTF-8"
            return
        if not text.strip():
            return
        try:
            cells = next(csv.reader([text], strict=True))
        except csv.Error as error:
            if self.header is None:
                raise ImportFileInvalid(f"The CSV header is malformed: {error}") from None
            yield line, f"malformed CSV: {error}"
            return
        if self.header is None:
            self.header = _check_header(cells)
            return
        if len(cells) != len(self.header):
            yield line, f"expected {len(self.header)} cells, found {len(cells)}"
            return
        row: dict[str, Any] = {}
        for name, cell in zip(self.header, cells, strict=True):
            if name in READ_ONLY_FIELDS or (name in _CSV_DEFAULT_WHEN_EMPTY and cell == ""):
                continue
            convert = _CSV_CELL.get(name)
            try:
                row[name] = convert(cell) if convert else cell
            except exact_json.Refused as error:
                yield line, f"{name}: {error.msg}"
                return
        yield line, row


def _check_header(cells: list[str]) -> list[str]:
    names = [cell.strip() for cell in cells]
    fields = ProductCreate.model_fields
    unknown = [name for name in names if name not in fields and name not in READ_ONLY_FIELDS]
    if unknown:
        raise ImportFileInvalid(f"Unknown CSV column(s): {', '.join(unknown)}")
    if len(set(names)) != len(names):
        raise ImportFileInvalid("A CSV column appears twice in the header")
    missing = [name for name, info in fields.items() if info.is_required() and name not in names]
    if missing:
        raise ImportFileInvalid(f"Missing CSV column(s): {', '.join(missing)}")
    return names


def _describe(error: ValidationError) -> str:
    # Never echo the input: a field name and what is wrong with it.
    parts = [
        f"{'.'.join(str(part) for part in item['loc']) or 'row'}: {item['msg']}"
        for item in error.errors(include_url=False, include_input=False)
    ]
    detail = "; ".join(parts)
    return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 3] + "..."


def _to_record(line: int, fields: dict[str, Any]) -> Record | str:
    for name in READ_ONLY_FIELDS.intersection(fields):
        del fields[name]
    try:
        product = ProductCreate.model_validate(fields)
    except ValidationError as error:
        return _describe(error)
    return _record(line, product)


def _record(line: int, product: ProductCreate) -> Record:
    return (line, *copy_values(product))


class _FastRow(ProductCreate):
    """`ProductCreate` for the fast path: the line's bytes validated without a dict in between.

    Only its yes counts: a row it refuses goes the exact way, so every row error comes from
    `ProductCreate` on the row parsed as the API parses a body. Where JSON mode could say yes
    to what the exact way refuses, or read a value differently, it says no instead:
    - It takes the read-only fields of an export (which the exact way drops) only with the
      types an export writes: NaN, which the API refuses as JSON, is no int.
    - JSON mode reads a number with a fraction as a float, the API as a Decimal. Price refuses
      floats; stock and category_id would take 5.0000000000000001 as 5 where a Decimal is no
      integer, so they refuse floats here; an attribute would stay a float where the API makes
      1.0 an int, so `_fast_record` refuses those.
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


def _fast_record(line: int, raw: bytes) -> Record | None:
    """The record for a line `_FastRow` finds valid, without floats in attributes; else None."""
    try:
        product = _FastRow.model_validate_json(raw)
    except ValidationError:
        return None
    for value in product.attributes.values():
        if type(value) is float:
            return None
    return _record(line, product)
