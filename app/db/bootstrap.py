"""Finding and preparing a database: create it if missing, migrate it, or start an embedded one."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from urllib.parse import quote

import asyncpg
from sqlalchemy.engine import make_url

from app.core.logging import get_logger

log = get_logger("app.db")


def local_url(port: int = 5432) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/catalog"


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def ensure_database(url: str) -> bool:
    """Create the URL's database when it does not exist. True when it was created."""
    name = make_url(url).database
    if not name:
        raise ValueError("DATABASE_URL names no database")
    connection = await asyncpg.connect(asyncpg_dsn(url, "postgres"), timeout=10)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await connection.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False
        log.info("created database", database=name)
        return True
    finally:
        await connection.close()


async def drop_database(url: str) -> None:
    name = make_url(url).database
    connection = await asyncpg.connect(asyncpg_dsn(url, "postgres"), timeout=10)
    try:
        quoted = '"' + str(name).replace('"', '""') + '"'
        await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await connection.close()


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def alembic_config(url: str) -> object:
    from alembic.config import Config

    ini = Path.cwd() / "alembic.ini"
    if not ini.exists():
        ini = PROJECT_ROOT / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def migrate(url: str, revision: str = "head") -> None:
    from alembic import command

    asyncio.run(ensure_database(url))
    command.upgrade(alembic_config(url), revision)  # type: ignore[arg-type]
    log.info("migrated", revision=revision)


def embedded_database_url(data_dir: Path, database: str = "catalog") -> str:
    """Start (or reuse) a PostgreSQL under `data_dir` with pgserver. Development only."""
    from pgserver import postgres_server

    # pgserver logs every initdb/pg_ctl command line and its output at INFO; its failures
    # come at ERROR with the server's log, which is what a developer needs to see.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    # pgserver creates DATA_DIR but not its parents (a fresh clone has no .data/).
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = postgres_server.get_server(str(data_dir), cleanup_mode="stop")
    socket_dir = make_url(server.get_uri()).query.get("host")
    log.warning(
        "no PostgreSQL configured or on localhost:5432: using an EMBEDDED PostgreSQL "
        "for development only",
        data_dir=str(data_dir),
    )
    return f"postgresql+asyncpg://postgres@/{database}?host={quote(str(socket_dir))}"
