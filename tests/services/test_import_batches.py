"""The import's batches: a small first one, so the database starts early, then doubling."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from app.services import importer
from app.services.import_rows import Record
from app.services.importer import ImportFormat
from tests.factories import product_data


async def one_chunk(body: bytes) -> AsyncIterator[bytes]:
    yield body


@pytest.mark.usefixtures("users")
async def test_batches_start_small_and_double_up_to_the_limit(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "FIRST_BATCH_ROWS", 2)
    monkeypatch.setattr(importer, "COPY_BATCH_ROWS", 8)
    monkeypatch.setattr(importer, "YIELD_EVERY_LINES", 1)
    sizes: list[int] = []
    apply = importer._Batches.apply

    async def counting(self: importer._Batches, records: list[Record]) -> None:
        sizes.append(len(records))
        await apply(self, records)

    monkeypatch.setattr(importer._Batches, "apply", counting)
    body = "".join(json.dumps(product_data(sku=f"RAMP-{n}")) + "\n" for n in range(30)).encode()
    async with app.state.sessionmaker() as session:
        report = await importer.import_products(session, one_chunk(body), ImportFormat.ndjson)
        count = (await session.execute(text("SELECT count(*) FROM products"))).scalar()
        await session.rollback()
    assert sizes == [2, 4, 8, 8, 8]
    assert (report.created, count) == (30, 30)
