"""The migrations build the schema the models describe, and unwind cleanly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from app.db import bootstrap
from app.models import Base


@pytest.fixture
def empty_database_url(database_url: str) -> Iterator[str]:
    url = make_url(database_url).set(database=f"catalog_migrations_{uuid.uuid4().hex[:8]}")
    rendered = url.render_as_string(hide_password=False)
    asyncio.run(bootstrap.ensure_database(rendered))
    try:
        yield rendered
    finally:
        asyncio.run(bootstrap.drop_database(rendered))


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


async def _drift(url: str) -> list[object]:
    engine = create_async_engine(url)

    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


def test_upgrade_downgrade_upgrade_on_an_empty_database(empty_database_url: str) -> None:
    config = bootstrap.alembic_config(empty_database_url)
    command.upgrade(config, "head")  # type: ignore[arg-type]
    assert set(Base.metadata.tables) <= asyncio.run(_tables(empty_database_url))
    command.downgrade(config, "base")  # type: ignore[arg-type]
    assert asyncio.run(_tables(empty_database_url)) == {"alembic_version"}
    command.upgrade(config, "head")  # type: ignore[arg-type]
    assert set(Base.metadata.tables) <= asyncio.run(_tables(empty_database_url))


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    assert asyncio.run(_drift(database_url)) == []
