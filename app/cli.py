"""The `catalog` command: serve, migrate, seed, and the development runner behind `make run`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from app.core.config import get_settings
from app.core.logging import configure_logging, get_logger

log = get_logger("app.cli")


@click.group()
def main() -> None:
    """Product catalog service."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


def _serve(host: str, port: int, workers: int) -> None:
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # our middleware writes one structured line per request
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )


@main.command()
@click.option("--host", default=None, help="default: HOST setting (127.0.0.1)")
@click.option("--port", type=int, default=None, help="default: PORT setting (8000)")
@click.option("--workers", type=int, default=None, help="default: WORKERS setting (1)")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API with uvicorn."""
    settings = get_settings()
    _serve(host or settings.host, port or settings.port, workers or settings.workers)


@main.command()
@click.option("--revision", default="head", show_default=True)
def migrate(revision: str) -> None:
    """Create the database if it is missing and migrate it to REVISION."""
    from app.db.bootstrap import migrate as run_migrations

    run_migrations(str(get_settings().database_url), revision)


@main.command()
@click.option("--products", "count", type=click.IntRange(0, 10_000_000), default=1000)
@click.option("--seed", "random_seed", type=int, default=42, show_default=True)
def seed(count: int, random_seed: int) -> None:
    """Fill the catalog with COUNT realistic demo products (and a category tree)."""
    from app.services.seed import seed_catalog

    created = asyncio.run(seed_catalog(str(get_settings().database_url), count, random_seed))
    click.echo(f"seeded {created} products")


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".data/postgres"))
def dev(data_dir: Path) -> None:
    """What `make run` does: find a database, create and migrate it, then serve.

    The database is DATABASE_URL when set, else PostgreSQL on localhost:5432, else an embedded
    PostgreSQL under DATA_DIR (development only).
    """
    from app.db import bootstrap

    if "DATABASE_URL" in os.environ or (Path(".env").exists() and _env_file_sets_database()):
        url = str(get_settings().database_url)
    elif bootstrap.port_open("127.0.0.1", 5432):
        url = bootstrap.LOCAL_URL
    else:
        url = bootstrap.embedded_database_url(data_dir.resolve())
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    bootstrap.migrate(url)
    settings = get_settings()
    _serve(settings.host, settings.port, 1)


def _env_file_sets_database() -> bool:
    return any(
        line.strip().startswith("DATABASE_URL=") for line in Path(".env").read_text().splitlines()
    )
