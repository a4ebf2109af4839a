from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli import main
from app.core.config import get_settings
from app.core.errors import Conflict
from app.services import importer
from app.services.importer import ImportFormat
from tests.factories import product_data


async def chunks_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def ndjson_of(*rows: dict[str, Any]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def count_products(session: AsyncSession) -> Any:
    return session.execute(text("SELECT count(*) FROM products"))


async def wait_on_a_lock(app: Any, pid: int) -> None:
    """Until the server backend `pid` waits on a lock (bounded)."""
    query = text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid")
    async with app.state.engine.connect() as watcher:
        for _ in range(1000):
            if (await watcher.execute(query, {"pid": pid})).scalar():
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited on a lock")


@pytest.mark.usefixtures("users")
class TestImportProducts:
    async def test_runs_in_the_callers_transaction(self, app: Any) -> None:
        body = "".join(json.dumps(product_data()) + "\n" for _ in range(3)).encode()
        async with app.state.sessionmaker() as session:
            report = await importer.import_products(session, chunks_of(body), ImportFormat.ndjson)
            assert report.created == 3
            assert (await count_products(session)).scalar() == 3
            # A second import in the same transaction gets a fresh staging table.
            again = await importer.import_products(session, chunks_of(body), ImportFormat.ndjson)
            assert (again.created, again.unchanged) == (0, 3)
            await session.rollback()
        async with app.state.sessionmaker() as session:
            assert (await count_products(session)).scalar() == 0

    async def test_a_crash_mid_stream_leaves_the_catalog_as_it_was(self, app: Any) -> None:
        async def crashing() -> AsyncIterator[bytes]:
            rows = [product_data() for _ in range(importer.COPY_BATCH_ROWS + 1)]
            yield "".join(json.dumps(row) + "\n" for row in rows).encode()
            raise RuntimeError("killed")

        with pytest.raises(RuntimeError, match="killed"):
            async with app.state.sessionmaker() as session, session.begin():
                await importer.import_products(session, crashing(), ImportFormat.ndjson)
        async with app.state.sessionmaker() as session:
            assert (await count_products(session)).scalar() == 0

    async def test_batches_add_up_and_a_later_crash_undoes_the_applied_ones(
        self, app: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(importer, "COPY_BATCH_ROWS", 3)
        async with app.state.sessionmaker() as session, session.begin():
            existing = "".join(json.dumps(product_data(sku=f"B-{n}")) + "\n" for n in range(4))
            await importer.import_products(
                session, chunks_of(existing.encode()), ImportFormat.ndjson
            )
        rows = [
            product_data(sku="B-0"),  # changed: a new name below
            product_data(sku="B-1", category_id=999),
            product_data(sku="B-new-1"),
            product_data(sku="B-new-2", category_id=998),
            product_data(sku="b-new-1"),  # a SKU seen on line 3, two batches back
            product_data(sku="B-new-3"),
            product_data(sku="B-new-4", price="x"),
        ]
        rows[0]["name"] = "renamed"
        body = "".join(json.dumps(row) + "\n" for row in rows).encode()
        async with app.state.sessionmaker() as session, session.begin():
            report = await importer.import_products(session, chunks_of(body), ImportFormat.ndjson)
        assert (report.created, report.updated, report.unchanged, report.failed) == (2, 1, 0, 4)
        assert [error.line for error in report.errors] == [2, 4, 5, 7]

        async def crashing() -> AsyncIterator[bytes]:
            for _ in range(3):  # three batches of three, each applied before the next
                yield "".join(json.dumps(product_data()) + "\n" for _ in range(3)).encode()
            raise RuntimeError("killed after three batches were applied")

        with pytest.raises(RuntimeError, match="killed"):
            async with app.state.sessionmaker() as session, session.begin():
                await importer.import_products(session, crashing(), ImportFormat.ndjson)
        async with app.state.sessionmaker() as session:
            assert (await count_products(session)).scalar() == 6

    async def test_a_deadlock_between_two_imports_is_a_conflict_for_one(
        self, app: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(importer, "COPY_BATCH_ROWS", 1)
        x, y = product_data(sku="LOCK-X"), product_data(sku="LOCK-Y")

        def body(*rows: dict[str, Any]) -> AsyncIterator[bytes]:
            return chunks_of(*[(json.dumps({**row, "stock": 99}) + "\n").encode() for row in rows])

        async with app.state.sessionmaker() as session, session.begin():
            await importer.import_products(session, chunks_of(ndjson_of(x, y)), ImportFormat.ndjson)
        sessionmaker = app.state.sessionmaker
        async with sessionmaker() as first, sessionmaker() as second:
            await importer.import_products(first, body(x), ImportFormat.ndjson)  # holds X
            pid = await (await importer.driver_connection(second)).fetchval(
                "SELECT pg_backend_pid()"
            )
            # The second locks Y, then waits for X ...
            second_import = asyncio.create_task(
                importer.import_products(second, body(y, x), ImportFormat.ndjson)
            )
            await wait_on_a_lock(app, pid)
            # ... while the first now wants Y: a cycle, which PostgreSQL breaks.
            outcomes = await asyncio.gather(
                importer.import_products(first, body(y), ImportFormat.ndjson),
                second_import,
                return_exceptions=True,
            )
        conflicts = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(conflicts) == 1, outcomes
        assert sum(isinstance(o, importer.ImportReport) for o in outcomes) == 1

    async def test_new_skus_skip_the_stage_until_the_savepoints_run_out(
        self, app: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(importer, "COPY_BATCH_ROWS", 2)
        stage = text("SELECT to_regclass('pg_temp.import_rows') IS NOT NULL")
        lines = [ndjson_of(product_data(sku=f"CAP-{n}")) for n in range(5)]
        async with app.state.sessionmaker() as session:
            report = await importer.import_products(session, chunks_of(*lines), ImportFormat.ndjson)
            assert report.created == 5
            assert not (await session.execute(stage)).scalar()
            await session.rollback()
        monkeypatch.setattr(importer, "MAX_SAVEPOINTS", 1)
        async with app.state.sessionmaker() as session:
            report = await importer.import_products(session, chunks_of(*lines), ImportFormat.ndjson)
            assert (report.created, report.failed) == (5, 0)
            assert (await session.execute(stage)).scalar()  # batches 2 and 3 were upserted
            assert (await count_products(session)).scalar() == 5
            await session.rollback()

    async def test_a_sku_taken_after_the_lookup_sends_the_batch_to_the_upsert(
        self, app: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        existing = product_data(sku="RACE-1")
        async with app.state.sessionmaker() as session, session.begin():
            await importer.import_products(
                session, chunks_of(ndjson_of(existing)), ImportFormat.ndjson
            )
        # As if RACE-1 had been created between the lookup and the COPY.
        monkeypatch.setattr(importer, "LOOKUP", "SELECT $1::bigint[], ($2::text[])[1:0]")
        body = ndjson_of(
            product_data(sku="RACE-0"), {**existing, "sku": "race-1", "stock": 1}, existing
        )
        async with app.state.sessionmaker() as session, session.begin():
            report = await importer.import_products(session, chunks_of(body), ImportFormat.ndjson)
        assert (report.created, report.updated, report.unchanged, report.failed) == (1, 1, 0, 1)
        async with app.state.sessionmaker() as session:
            rows = await session.execute(
                text("SELECT sku, stock, version FROM products ORDER BY sku")
            )
            assert rows.all() == [("RACE-0", 10, 1), ("race-1", 1, 2)]

    async def test_a_product_created_meanwhile_is_updated_not_a_conflict(self, app: Any) -> None:
        """Another transaction creates a SKU the import takes for new: the import waits, then
        updates the product, as an upsert would have."""
        row = product_data(sku="MEANWHILE-1")
        sessionmaker = app.state.sessionmaker
        async with sessionmaker() as first, sessionmaker() as second:
            await importer.import_products(first, chunks_of(ndjson_of(row)), ImportFormat.ndjson)
            pid = await (await importer.driver_connection(second)).fetchval(
                "SELECT pg_backend_pid()"
            )
            changed = ndjson_of({**row, "name": "from the second import"})
            second_import = asyncio.create_task(
                importer.import_products(second, chunks_of(changed), ImportFormat.ndjson)
            )
            await wait_on_a_lock(app, pid)
            await first.commit()
            report = await second_import
            await second.commit()
        assert (report.created, report.updated, report.failed) == (0, 1, 0)
        async with app.state.sessionmaker() as session:
            rows = await session.execute(text("SELECT name, version FROM products"))
            assert rows.all() == [("from the second import", 2)]

    async def test_committed_by_the_caller(self, app: Any) -> None:
        body = b"sku,name,price,currency\r\nX-1,One,1,eur\r\nX-2,Two,2,usd\r\n"
        async with app.state.sessionmaker() as session, session.begin():
            report = await importer.import_products(session, chunks_of(body), ImportFormat.csv)
        assert (report.created, report.failed) == (2, 0)
        async with app.state.sessionmaker() as session:
            rows = await session.execute(text("SELECT sku, currency FROM products ORDER BY id"))
            assert rows.all() == [("X-1", "EUR"), ("X-2", "USD")]


@pytest.mark.usefixtures("users")
class TestCliImport:
    def test_prints_the_report_and_exits_1_when_rows_failed(
        self, database_url: str, tmp_path: Path
    ) -> None:
        file = tmp_path / "products.csv"
        file.write_text("sku,name,price,currency\nCLI-1,One,1.50,eur\nCLI-2,,1,eur\n")
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(
                main, ["import", str(file)], env={"DATABASE_URL": database_url}
            )
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 1, result.output
        report = json.loads(result.output.strip().splitlines()[-1])
        assert (report["created"], report["failed"]) == (1, 1)
        assert report["errors"][0]["line"] == 3
