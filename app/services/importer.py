"""Bulk import: stream NDJSON or CSV, validate every row as the API does, upsert by SKU.

How a file is applied:
- Each NDJSON line, or CSV record after the header, is validated with `ProductCreate`, the
  schema of `POST /products`. The read-only fields of an export (id, version, created_at,
  updated_at) are ignored, so an export imports back as it is. (An NDJSON line is first tried
  straight from its bytes, see `_FastRow`; the errors always come from the exact way.)
- Valid rows are applied in batches while the body still streams in: rows naming a category
  that does not exist are reported; rows whose SKU is no live product yet are COPYed straight
  into products; the others go through COPY into a temporary table and one
  `INSERT ... ON CONFLICT` that updates them by SKU (case-insensitive, live products only).
  The database works on one batch while Python validates the next.
- A row equal to its product changes nothing: same version, same updated_at; it counts as
  `unchanged`. So `created + updated + unchanged + failed` is the number of rows.
- A SKU may appear only once in a file (case-insensitively): a later line with a SKU already
  seen is refused with a row error naming the first line. (Which of two rows for one product
  should win is the file's ambiguity to fix, not ours to guess.)
- Everything happens in the caller's transaction: the caller commits, or nothing happened.
- Lines count from 1, blank lines included; a CSV header is line 1, and a CSV record that spans
  lines (a quoted newline) is reported at the line where it starts. `errors` lists the first
  100 failed rows by line; `failed` counts them all.

CSV: UTF-8 (a leading BOM is allowed), comma-separated, RFC 4180 quoting. The header names the
columns in any order: sku, name, price and currency are required; description, stock, status,
category_id, tags and attributes are optional; id, version, created_at and updated_at are
ignored. `tags` is `a|b|c`, or a JSON array when a tag itself contains `|`; `attributes` is a
JSON object. An empty cell means the field's default: "" for description, 0 for stock, draft
for status, null for category_id, no tags, no attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, ImportFileInvalid, Unprocessable
from app.core.metrics import IMPORT_ROWS
from app.schemas.product import WRITABLE_COLUMNS, ProductCreate

READ_ONLY_FIELDS = frozenset({"id", "version", "created_at", "updated_at"})
MAX_LISTED_ERRORS = 100
MAX_RECORD_BYTES = 1024 * 1024
COPY_BATCH_ROWS = 10_000
YIELD_EVERY_LINES = 256  # about 5 ms of validation
MAX_SAVEPOINTS = 32  # see _Batches._create
# Big files take longer than the service's per-statement timeout; the body limit bounds them.
STATEMENT_TIMEOUT_SECONDS = 600
TIMEOUT = STATEMENT_TIMEOUT_SECONDS + 5  # asyncpg's own limit, just past the server's
BOM = b"\xef\xbb\xbf"
_MAX_INT_DIGITS = 40
_MAX_DETAIL = 500


class ImportFormat(StrEnum):
    ndjson = "ndjson"
    csv = "csv"


MEDIA_TYPES = {"application/x-ndjson": ImportFormat.ndjson, "text/csv": ImportFormat.csv}


class RowError(BaseModel):
    line: int = Field(description="from 1; in CSV the header is line 1")
    detail: str


class ImportReport(BaseModel):
    created: int = Field(0, description="new products")
    updated: int = Field(0, description="products changed (each got a new version)")
    unchanged: int = Field(0, description="rows equal to their product: nothing written")
    failed: int = Field(0, description="rows refused, all of them")
    errors: list[RowError] = Field(
        default_factory=list, description=f"the first {MAX_LISTED_ERRORS} failed rows by line"
    )


# --- reading rows -----------------------------------------------------------------------------

Parsed = tuple[int, dict[str, Any] | str]  # (line, fields) or (line, what is wrong)
Record = tuple[Any, ...]  # a valid row in STAGE_COLUMNS order: line, then PRODUCT_COLUMNS
Checked = tuple[int, Record | str]  # (line, record) or (line, what is wrong)


async def _lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[list[bytes]]:
    """The body's lines, a chunk's worth at a time, each ending in b"\\n" but the last."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\n" not in chunk:
            if len(buffer) > MAX_RECORD_BYTES:
                raise ImportFileInvalid(f"A line is longer than {MAX_RECORD_BYTES} bytes")
            continue
        lines = buffer.split(b"\n")
        buffer = lines.pop()
        yield [line + b"\n" for line in lines]
    if buffer:
        yield [buffer]


def _parse_int(text: str) -> int | Decimal:
    # As in the API (app.api.routing): huge integers become a Decimal the schema refuses.
    return int(text) if len(text) <= _MAX_INT_DIGITS else Decimal(text)


def _reject_constant(name: str) -> None:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


def _exact_json(text: str | bytes) -> Any:
    """JSON parsed as the API parses request bodies: numbers with a fraction are Decimal."""
    return json.loads(
        text, parse_float=Decimal, parse_int=_parse_int, parse_constant=_reject_constant
    )


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
    # floats) or refused the line.
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _exact_json(raw)
    return _exact_json(raw) if _has_float(value) else value


class NdjsonRows:
    def __init__(self) -> None:
        self.line = 0

    def _raw(self, lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
        for raw in lines:
            self.line += 1
            if self.line == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            raw = raw.strip()
            if raw:
                yield self.line, raw

    def feed(self, lines: Iterable[bytes]) -> Iterator[Parsed]:
        """Each line parsed as the API parses a request body."""
        for line, raw in self._raw(lines):
            yield line, _ndjson_fields(raw)

    def check(self, lines: Iterable[bytes]) -> Iterator[Checked]:
        """Each line validated: by the fast path if it says yes, else parsed as by `feed`."""
        for line, raw in self._raw(lines):
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
    except ValueError as error:
        return f"not valid JSON: {str(error)[:200]}"
    if not isinstance(value, dict):
        return "each line must be a JSON object"
    return value


def _csv_tags(cell: str) -> Any:
    if cell.lstrip().startswith("["):
        try:
            return _exact_json(cell)
        except ValueError:
            return cell  # the schema says what is wrong with it
    return cell.split("|") if cell else []


def _csv_attributes(cell: str) -> Any:
    if not cell.strip():
        return {}
    try:
        return _exact_json(cell)
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
            if self.quoted:
                if self.pending_size > MAX_RECORD_BYTES:
                    raise ImportFileInvalid(
                        f"The record at line {self.pending_start} is longer than "
                        f"{MAX_RECORD_BYTES} bytes (an unclosed quote?)"
                    )
                continue
            record = b"".join(self.pending)
            self.pending, self.pending_size = [], 0
            yield from self._record(self.pending_start, record)

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
            row[name] = convert(cell) if convert else cell
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
    return (
        line,
        product.sku,
        product.name,
        product.description,
        product.price,
        product.currency,
        product.stock,
        product.status.value,
        product.category_id,
        product.tags,
        orjson.dumps(product.attributes).decode(),
    )


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


# --- applying rows ----------------------------------------------------------------------------

STAGE_COLUMNS = ("line", *WRITABLE_COLUMNS)
PRODUCT_COLUMNS = STAGE_COLUMNS[1:]
STAGE_TABLE = "import_rows"
CREATE_STAGE = f"""
DROP TABLE IF EXISTS pg_temp.{STAGE_TABLE};
CREATE TEMP TABLE {STAGE_TABLE} (
    line integer NOT NULL,
    sku text NOT NULL,
    name text NOT NULL,
    description text NOT NULL,
    price numeric(12, 2) NOT NULL,
    currency text NOT NULL,
    stock integer NOT NULL,
    status text NOT NULL,
    category_id bigint,
    tags text[] NOT NULL,
    attributes jsonb NOT NULL
) ON COMMIT DROP
"""
_SKU = STAGE_COLUMNS.index("sku")
_CATEGORY = STAGE_COLUMNS.index("category_id")
# What a batch needs to know first: which of its categories exist (a row naming one that does
# not is a row error, not a foreign-key violation that would fail the whole import), and which
# of its SKUs ($2, in lower case) are live products already. LIMIT 1 makes each SKU one probe
# of the live-SKU index: without it, products just imported (no statistics yet) get read in full.
LOOKUP = """
SELECT
    ARRAY(SELECT id FROM categories WHERE id = ANY($1::bigint[])),
    ARRAY(
        SELECT live.key FROM unnest($2::text[]) AS key,
        LATERAL (
            SELECT key FROM products p WHERE lower(p.sku) = key AND p.deleted_at IS NULL LIMIT 1
        ) AS live
    )
"""
_COLUMNS = ", ".join(PRODUCT_COLUMNS)
_UPDATES = ", ".join(f"{column} = EXCLUDED.{column}" for column in PRODUCT_COLUMNS)


def _same_row(current: str, incoming: str) -> str:
    return (
        f"({', '.join(f'{current}.{c}' for c in PRODUCT_COLUMNS)}) IS NOT DISTINCT FROM "
        f"({', '.join(f'{incoming}.{c}' for c in PRODUCT_COLUMNS)})"
    )


# A row equal to its live product changes nothing. Leaving it out here is what makes a re-import
# cheap: ON CONFLICT DO UPDATE would lock (and so write) every conflicting row, even the ones
# its WHERE then skips.
# $1, the batch's SKUs in lower case, lets the products side be read through the SKU index
# whatever the staging table's statistics (it has none).
DROP_UNCHANGED = f"""
DELETE FROM {STAGE_TABLE} r USING products p
WHERE lower(p.sku) = ANY($1::text[]) AND p.deleted_at IS NULL
  AND lower(p.sku) = lower(r.sku) AND {_same_row("p", "r")}
"""
# The WHERE on DO UPDATE still skips a row that a concurrent writer made equal meanwhile;
# xmax = 0 marks the inserted rows.
UPSERT = f"""
WITH applied AS (
    INSERT INTO products AS p ({_COLUMNS})
    SELECT {_COLUMNS} FROM {STAGE_TABLE} ORDER BY line
    ON CONFLICT (lower(sku)) WHERE deleted_at IS NULL DO UPDATE
    SET {_UPDATES}, version = p.version + 1
    WHERE NOT {_same_row("p", "EXCLUDED")}
    RETURNING p.xmax = 0 AS created
)
SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created) FROM applied
"""


class _Outcome:
    """The running report: counts of every kind, and the failed rows with the lowest lines."""

    def __init__(self) -> None:
        self.created = self.updated = self.unchanged = self.failed = 0
        self.errors: list[RowError] = []

    def fail(self, line: int, detail: str) -> None:
        self.failed += 1
        self.errors.append(RowError(line=line, detail=detail))
        if len(self.errors) > 10 * MAX_LISTED_ERRORS:
            self._trim()

    def _trim(self) -> None:
        self.errors = sorted(self.errors, key=lambda error: error.line)[:MAX_LISTED_ERRORS]

    def report(self) -> ImportReport:
        self._trim()
        return ImportReport(
            created=self.created,
            updated=self.updated,
            unchanged=self.unchanged,
            failed=self.failed,
            errors=self.errors,
        )


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session, inside the session's transaction."""
    connection = await session.connection()
    # SQLAlchemy's asyncpg adapter sends BEGIN with its first statement: issue one through it,
    # so what runs on the raw connection belongs to the session's transaction.
    # plan_cache_mode: a server, role or engine setting that forces a fresh plan for every run
    # of a statement also replans the foreign-key check PostgreSQL runs for each inserted row
    # (a cached plan with the category id as parameter): 15% more time for a fresh import.
    await connection.exec_driver_sql(
        f"SELECT set_config('statement_timeout', '{STATEMENT_TIMEOUT_SECONDS}s', true), "
        "set_config('plan_cache_mode', 'auto', true)"
    )
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if not isinstance(driver, asyncpg.Connection) or not driver.is_in_transaction():
        raise RuntimeError("the import must run inside the session's transaction")
    return driver


class _Batches:
    """Applies batches of valid rows in order, on the connection of the session's transaction.

    A row whose SKU is no live product yet is COPYed straight into products: the stage and the
    upsert would cost the database a second COPY and a conflict check per row, some 15% of a
    fresh import. The other rows go through the stage: the ones equal to their product are
    dropped, and `INSERT ... ON CONFLICT` updates the rest (or creates a product deleted since).
    """

    def __init__(self, connection: asyncpg.Connection, outcome: _Outcome) -> None:
        self.connection = connection
        self.outcome = outcome
        self.savepoints = 0
        self.staging = False

    async def apply(self, records: list[Record]) -> None:
        try:
            await self._apply(records)
        except asyncpg.ForeignKeyViolationError:
            raise Unprocessable(
                "A category was deleted while the import ran; nothing was imported, try again"
            ) from None
        except asyncpg.DeadlockDetectedError:
            # Two imports updating the same products in different orders: one gives way.
            raise Conflict(
                "The import collided with another write to the same products; nothing was "
                "imported, try again"
            ) from None

    async def _apply(self, records: list[Record]) -> None:
        keys = [record[_SKU].lower() for record in records]
        named = {record[_CATEGORY] for record in records} - {None}
        lookup = await self.connection.fetchrow(LOOKUP, list(named), keys, timeout=TIMEOUT)
        assert lookup is not None  # a SELECT without FROM answers one row
        categories = set(lookup[0])
        live_keys = set(lookup[1])
        new: list[Record] = []
        known: list[Record] = []
        for record, key in zip(records, keys, strict=True):
            category = record[_CATEGORY]
            if category is not None and category not in categories:
                self.outcome.fail(record[0], f"category_id {category} does not exist")
            elif key in live_keys:
                known.append(record)
            else:
                new.append(record)
        if new and not await self._create(new):
            known += new
        if known:
            await self._upsert(known)

    async def _create(self, records: list[Record]) -> bool:
        """COPY products for SKUs that were free; False, with nothing done, if one is taken now.

        A transaction that created one of these SKUs after the lookup makes the COPY fail (once
        it commits): the savepoint undoes the batch's COPY and the upsert takes the batch, as if
        the SKU had been taken all along. Each savepoint is a subtransaction, and past 64 of them
        PostgreSQL's snapshots of every other session get slower while the import runs, so only
        the first MAX_SAVEPOINTS batches take this path.
        """
        if self.savepoints >= MAX_SAVEPOINTS:
            return False
        self.savepoints += 1
        await self.connection.execute("SAVEPOINT import_batch", timeout=TIMEOUT)
        try:
            await self.connection.copy_records_to_table(
                "products",
                records=[record[1:] for record in records],
                columns=PRODUCT_COLUMNS,
                timeout=TIMEOUT,
            )
        except asyncpg.UniqueViolationError:
            await self.connection.execute(
                "ROLLBACK TO SAVEPOINT import_batch; RELEASE SAVEPOINT import_batch",
                timeout=TIMEOUT,
            )
            return False
        await self.connection.execute("RELEASE SAVEPOINT import_batch", timeout=TIMEOUT)
        self.outcome.created += len(records)
        return True

    async def _upsert(self, records: list[Record]) -> None:
        """Stage the rows, drop the ones equal to their product, and upsert the rest."""
        if not self.staging:
            await self.connection.execute(CREATE_STAGE, timeout=TIMEOUT)
            self.staging = True
        await self.connection.copy_records_to_table(
            STAGE_TABLE, records=records, columns=STAGE_COLUMNS, timeout=TIMEOUT
        )
        await self.connection.execute(
            DROP_UNCHANGED, [record[_SKU].lower() for record in records], timeout=TIMEOUT
        )
        counts = await self.connection.fetchrow(UPSERT, timeout=TIMEOUT)
        assert counts is not None  # an aggregate always answers one row
        self.outcome.created += counts[0]
        self.outcome.updated += counts[1]
        # Rows a concurrent writer made equal since DROP_UNCHANGED are unchanged too.
        self.outcome.unchanged += len(records) - counts[0] - counts[1]
        await self.connection.execute(f"TRUNCATE {STAGE_TABLE}", timeout=TIMEOUT)


async def import_products(
    session: AsyncSession, chunks: AsyncIterable[bytes], fmt: ImportFormat
) -> ImportReport:
    """Apply an NDJSON or CSV body to the catalog in the session's transaction; never commits.

    Batches are applied while the next ones are parsed: the database works on one batch while
    Python validates the next, and everything still happens in the caller's one transaction.
    """
    connection = await driver_connection(session)
    rows: NdjsonRows | CsvRows = NdjsonRows() if fmt is ImportFormat.ndjson else CsvRows()
    outcome = _Outcome()
    batches = _Batches(connection, outcome)
    first_line: dict[str, int] = {}  # lower(sku) -> the line that has it
    batch: list[Record] = []
    applying: asyncio.Task[None] | None = None

    def take(checked: Iterable[Checked]) -> None:
        for line, record in checked:
            if isinstance(record, str):
                outcome.fail(line, record)
                continue
            key = record[1].lower()
            if key in first_line:
                outcome.fail(line, f"SKU {record[1]} is already on line {first_line[key]}")
                continue
            first_line[key] = line
            batch.append(record)

    async def send_batch() -> None:
        nonlocal applying, batch
        if applying is not None:
            await applying
            applying = None
        if batch:
            applying = asyncio.create_task(batches.apply(batch))
            batch = []

    try:
        async for lines in _lines(chunks):
            for start in range(0, len(lines), YIELD_EVERY_LINES):
                take(rows.check(lines[start : start + YIELD_EVERY_LINES]))
                if len(batch) >= COPY_BATCH_ROWS:
                    await send_batch()
                # Let the batch being applied go on to its next statement: the database waits
                # for as long as validation holds the event loop.
                await asyncio.sleep(0)
        take(rows.finish())
        await send_batch()
        await send_batch()
    except BaseException:
        if applying is not None:
            # Leave the connection idle before the caller rolls back.
            with contextlib.suppress(BaseException):
                await applying
        raise
    report = outcome.report()
    for name in ("created", "updated", "unchanged", "failed"):
        IMPORT_ROWS.labels(outcome=name).inc(getattr(report, name))
    return report


async def file_chunks(path: str, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    """A file's bytes in chunks, for `catalog import` (a local file: blocking reads are fine)."""
    with open(path, "rb") as file:
        while chunk := file.read(size):
            yield chunk
