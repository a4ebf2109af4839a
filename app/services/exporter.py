"""Export: the live catalog in id order, as NDJSON or CSV, streamed in constant memory.

A server-side cursor reads a batch of rows at a time from one snapshot. NDJSON lines are the
JSON of `GET /products/{id}` (rendered by PostgreSQL, as on the read path); CSV uses the
encoding `app.services.importer` reads back (tags `a|b` or a JSON array, attributes a JSON
object), so importing an export changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from enum import StrEnum

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.schemas.product import WRITABLE_COLUMNS
from app.services.product_queries import PRODUCT_JSON

BATCH_ROWS = 1_000


class ExportFormat(StrEnum):
    ndjson = "ndjson"
    csv = "csv"


MEDIA_TYPES = {ExportFormat.ndjson: "application/x-ndjson", ExportFormat.csv: "text/csv"}
CSV_COLUMNS = ("id", *WRITABLE_COLUMNS, "version", "created_at", "updated_at")
_RFC3339 = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''
NDJSON_QUERY = f"SELECT {PRODUCT_JSON} FROM products p WHERE p.deleted_at IS NULL ORDER BY p.id"
CSV_QUERY = f"""
SELECT p.id, p.sku, p.name, p.description, p.price::text, p.currency, p.stock, p.status,
       p.category_id, p.tags, p.attributes::text, p.version,
       to_char(p.created_at AT TIME ZONE 'UTC', {_RFC3339}),
       to_char(p.updated_at AT TIME ZONE 'UTC', {_RFC3339})
FROM products p WHERE p.deleted_at IS NULL ORDER BY p.id
"""


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
            values[9] = csv_tags(values[9])
            writer.writerow(values)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


async def stream_export(engine: AsyncEngine, fmt: ExportFormat) -> AsyncIterator[bytes]:
    """The export on a connection of its own, held for the whole stream and always released.

    The request's session has committed before a streamed body starts, so the stream checks out
    its own pooled connection. A stream cut short (the client went away) may leave the
    connection mid-transaction: it is then discarded, never handed back to the pool dirty.
    """
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, asyncpg.Connection)
        try:
            async with driver.transaction(isolation="repeatable_read", readonly=True):
                async for chunk in export_products(driver, fmt):
                    yield chunk
        finally:
            if driver.is_closed() or driver.is_in_transaction():
                await connection.invalidate()
