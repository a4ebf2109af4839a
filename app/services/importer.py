"""Bulk import: stream NDJSON or CSV, validate every row as the API does, upsert by SKU.

How a file is applied (how it is read and validated: app.services.import_rows):
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
- `errors` lists the first 100 failed rows by line; `failed` counts them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from enum import StrEnum

import asyncpg
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, Unprocessable
from app.core.metrics import IMPORT_ROWS
from app.db.session import transaction_connection
from app.services.import_rows import RECORD_COLUMNS, Checked, CsvRows, NdjsonRows, Record, lines_of
from app.services.product_columns import column_definitions

MAX_LISTED_ERRORS = 100
COPY_BATCH_ROWS = 10_000
# The first batch is small so the database starts early; each next one doubles, to COPY_BATCH_ROWS.
FIRST_BATCH_ROWS = 1_000
YIELD_EVERY_LINES = 256  # about 2 ms of validation
MAX_SAVEPOINTS = 32  # see _Batches._create
# Big files take longer than the service's per-statement timeout; the body limit bounds them.
STATEMENT_TIMEOUT_SECONDS = 600
TIMEOUT = STATEMENT_TIMEOUT_SECONDS + 5  # asyncpg's own limit, just past the server's


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


STAGE_COLUMNS = RECORD_COLUMNS
PRODUCT_COLUMNS = STAGE_COLUMNS[1:]
STAGE_TABLE = "import_rows"
_STAGE_DEFINITIONS = ",\n    ".join(["line integer NOT NULL", *column_definitions(PRODUCT_COLUMNS)])
CREATE_STAGE = f"""
DROP TABLE IF EXISTS pg_temp.{STAGE_TABLE};
CREATE TEMP TABLE {STAGE_TABLE} (
    {_STAGE_DEFINITIONS}
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
    return await transaction_connection(session)


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
    batch_rows = min(FIRST_BATCH_ROWS, COPY_BATCH_ROWS)
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
        nonlocal applying, batch, batch_rows
        if applying is not None:
            await applying
            applying = None
        if batch:
            applying = asyncio.create_task(batches.apply(batch))
            batch = []
            batch_rows = min(2 * batch_rows, COPY_BATCH_ROWS)

    try:
        async for lines in lines_of(chunks):
            for start in range(0, len(lines), YIELD_EVERY_LINES):
                take(rows.check(lines[start : start + YIELD_EVERY_LINES]))
                if len(batch) >= batch_rows:
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
