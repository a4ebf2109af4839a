"""Export: the live catalog in id order, as NDJSON or CSV, streamed in constant memory.

A server-side cursor reads a batch of rows at a time from one snapshot. NDJSON lines are the
JSON of `GET /products/{id}` (rendered by PostgreSQL, as on the read path); CSV uses the
encoding `app.services.importer` reads back (tags `a|b` or a JSON array, attributes a JSON
object), so importing an export changes nothing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager
from enum import StrEnum

import asyncpg
from asyncpg.transaction import Transaction
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import read_connection
from app.services.bulk_capacity import BulkLease
from app.services.product_columns import CSV_COLUMNS, CSV_SELECT, PRODUCT_JSON

BATCH_ROWS = 1_000


class ExportFormat(StrEnum):
    ndjson = "ndjson"
    csv = "csv"


MEDIA_TYPES = {ExportFormat.ndjson: "application/x-ndjson", ExportFormat.csv: "text/csv"}
NDJSON_QUERY = f"SELECT {PRODUCT_JSON} FROM products p WHERE p.deleted_at IS NULL ORDER BY p.id"
CSV_QUERY = f"SELECT {CSV_SELECT} FROM products p WHERE p.deleted_at IS NULL ORDER BY p.id"
_TAGS = CSV_COLUMNS.index("tags")


def csv_tags(tags: list[str]) -> str:
    """`a|b`, or a JSON array when that would not read back as the same list."""
    joined = "|".join(tags)
    if any("|" in tag for tag in tags) or joined.lstrip().startswith("["):
        return json.dumps(tags, ensure_ascii=False)
    return joined


async def _batches(
    connection: asyncpg.Connection, query: str
) -> AsyncIterator[list[asyncpg.Record]]:
    cursor = await connection.cursor(query)
    while rows := await cursor.fetch(BATCH_ROWS):
        yield rows


async def export_products(
    connection: asyncpg.Connection, fmt: ExportFormat
) -> AsyncIterator[bytes]:
    """Encoded chunks of the export; `connection` must be in a transaction (cursors need one)."""
    if fmt is ExportFormat.ndjson:
        async for rows in _batches(connection, NDJSON_QUERY):
            yield "".join(f"{row[0]}\n" for row in rows).encode()
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    async for rows in _batches(connection, CSV_QUERY):
        for row in rows:
            values = list(row)
            values[_TAGS] = csv_tags(values[_TAGS])
            writer.writerow(values)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


class _CutShort(Exception):
    """The stream ended before its last row: its connection may be mid-query."""


class ExportStream:
    """One export: a bulk slot, a connection and a REPEATABLE READ snapshot, all opened before
    the response starts (a busy service or a database outage is still a problem response) and
    released by `close()`, exactly once, however the stream ends.

    The request's session has committed before a streamed body starts, so the stream holds a
    connection of its own, from the bulk pool, with one transaction for the whole stream: every
    row comes from one snapshot. `deadline` (event-loop time) is when the response must cut the
    stream off, so that a client reading slowly cannot hold the connection for longer.
    """

    def __init__(
        self,
        lease: BulkLease,
        borrowed: AbstractAsyncContextManager[asyncpg.Connection],
        driver: asyncpg.Connection,
        transaction: Transaction,
        fmt: ExportFormat,
        deadline: float,
    ) -> None:
        self.lease = lease
        self._borrowed = borrowed
        self._driver = driver
        self._transaction = transaction
        self.fmt = fmt
        self.deadline = deadline
        self.finished = False
        self.sent_bytes = 0
        self._closed = False

    @classmethod
    async def open(
        cls, engine: AsyncEngine, lease: BulkLease, fmt: ExportFormat, *, deadline_seconds: float
    ) -> ExportStream:
        """Check out a connection and start the snapshot; on any failure the lease goes back."""
        try:
            deadline = asyncio.get_running_loop().time() + deadline_seconds
            # Discarded on any error, never handed back to the pool dirty.
            borrowed = read_connection(engine, discard_on_error=True)
            driver = await borrowed.__aenter__()
        except BaseException:
            lease.release()
            raise
        try:
            transaction = driver.transaction(isolation="repeatable_read", readonly=True)
            await transaction.start()
        except BaseException as error:
            try:
                await borrowed.__aexit__(type(error), error, error.__traceback__)
            finally:
                lease.release()
            raise
        return cls(lease, borrowed, driver, transaction, fmt, deadline)

    async def chunks(self) -> AsyncGenerator[bytes]:
        async for chunk in export_products(self._driver, self.fmt):
            yield chunk
            self.sent_bytes += len(chunk)
        self.finished = True

    async def close(self) -> None:
        """Give the connection and the slot back. A stream cut short (the client went away, the
        deadline passed) may leave the connection mid-query: it is then discarded, never handed
        back to the pool dirty; closing it ends the transaction on the server at once."""
        if self._closed:
            return
        self._closed = True
        error: BaseException | None = _CutShort()
        try:
            if self.finished and not self._driver.is_closed():
                await self._transaction.commit()
                error = None
        except BaseException as failed:
            error = failed
            raise
        finally:
            try:
                # Gives the pool slot back; after an error, with the connection discarded.
                if error is None:
                    await self._borrowed.__aexit__(None, None, None)
                else:
                    await self._borrowed.__aexit__(type(error), error, error.__traceback__)
            finally:
                self.lease.release()
