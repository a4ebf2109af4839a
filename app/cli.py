"""The `catalog` command: serve, migrate, seed, and the development runner behind `make run`."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.core.config import MissingSecretKey, get_settings
from app.core.logging import configure_logging, get_logger

if TYPE_CHECKING:
    from app.schemas.user import UserCreate
    from app.services.importer import ImportFormat, ImportReport

log = get_logger("app.cli")


class _CatalogGroup(click.Group):
    """Commands that cannot reach the database say so in one line, not with a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        import asyncpg
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import DBAPIError

        try:
            return super().invoke(ctx)
        except MissingSecretKey as error:
            raise click.ClickException(str(error)) from None
        except (OSError, asyncpg.PostgresError, DBAPIError) as error:
            if isinstance(error, OSError) and error.filename is not None:
                raise  # a file, not the database
            cause = error.orig if isinstance(error, DBAPIError) else error
            url = make_url(str(get_settings().database_url)).render_as_string(hide_password=True)
            raise click.ClickException(
                f"cannot use the database {url}: {cause}. Check DATABASE_URL; "
                "`catalog migrate` creates and migrates it."
            ) from None


@click.group(cls=_CatalogGroup)
def main() -> None:
    """Product catalog service."""
    from pydantic import ValidationError

    try:
        settings = get_settings()
    except ValidationError as error:
        # loc and msg only: the input may be SECRET_KEY itself.
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        raise click.ClickException(f"invalid settings: {reasons}") from None
    configure_logging(settings.log_level, settings.log_format)


@contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """Several workers share their metrics through files (prometheus_client multiprocess mode).

    PROMETHEUS_MULTIPROC_DIR must be set before the workers import prometheus_client and hold
    no file of an earlier run: a directory given in the environment is emptied of its *.db
    files; otherwise a fresh temporary one is made for more than one worker and removed at exit.
    """
    if given := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    if workers == 1:
        yield
        return
    directory = tempfile.mkdtemp(prefix="catalog-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(directory, ignore_errors=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve(host: str, port: int, workers: int) -> None:
    import uvicorn

    settings = get_settings()
    if settings.signing_secret is None:  # refuse here in one line, not in each worker
        raise MissingSecretKey
    # uvicorn drains, closes the app, then raises SIGTERM again so the default handler ends
    # the process with -15; after a clean drain that is a normal exit, so make it 0.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with _metrics_dir(workers):
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
    """Fill the catalog with COUNT realistic demo products (and a category tree).

    Creates and migrates the database first when needed, as `catalog migrate` does.
    """
    from app.db.bootstrap import migrate as run_migrations
    from app.services.seed import seed_catalog

    database_url = str(get_settings().database_url)
    run_migrations(database_url, "head")
    created = asyncio.run(seed_catalog(database_url, count, random_seed))
    click.echo(f"seeded {created} products")


_IMPORT_EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".csv": "csv"}


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "ndjson", "csv"]),
    default="auto",
    show_default=True,
    help="auto: by the file's extension (.ndjson or .jsonl, .csv)",
)
def import_file(file: Path, fmt: str) -> None:
    """Create or update products by SKU from FILE, NDJSON or CSV, in one transaction.

    Prints the report as JSON, as `POST /products/import` answers it; exits 1 when some rows
    failed (the valid rows are applied all the same).
    """
    from app.core.errors import Unprocessable
    from app.services.importer import ImportFormat

    if fmt == "auto":
        if file.suffix.lower() not in _IMPORT_EXTENSIONS:
            raise click.BadParameter("cannot tell the format by extension; pass --format")
        fmt = _IMPORT_EXTENSIONS[file.suffix.lower()]
    try:
        report = asyncio.run(_import_file(file, ImportFormat(fmt)))
    except Unprocessable as error:
        raise click.ClickException(error.detail) from None
    click.echo(report.model_dump_json())
    if report.failed:
        sys.exit(1)


async def _import_file(file: Path, fmt: ImportFormat) -> ImportReport:
    from app.db.engine import build_engine, build_sessionmaker
    from app.services.importer import file_chunks, import_products

    engine = build_engine(get_settings())
    try:
        async with build_sessionmaker(engine)() as session, session.begin():
            return await import_products(session, file_chunks(str(file)), fmt)
    finally:
        await engine.dispose()


@main.command("create-user")
@click.argument("email")
@click.option("--role", type=click.Choice(["viewer", "editor", "admin"]), required=True)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
def create_user(email: str, role: str, password_stdin: bool) -> None:
    """Create a user with ROLE; the password comes from stdin or a hidden prompt."""
    from pydantic import ValidationError

    from app.core.errors import EmailTaken
    from app.schemas.user import UserCreate

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        data = UserCreate.model_validate({"email": email, "password": password, "role": role})
    except ValidationError as error:
        # loc and msg only: the input may be the password.
        reasons = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors())
        raise click.ClickException(reasons) from None
    try:
        user_id = asyncio.run(_create_user(data))
    except EmailTaken as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"created user {user_id} with role {role}")


async def _create_user(data: UserCreate) -> int:
    from app.db.engine import build_engine, build_sessionmaker
    from app.services.users import UserService

    engine = build_engine(get_settings())
    try:
        async with build_sessionmaker(engine)() as session, session.begin():
            return (await UserService(session).create(data)).id
    finally:
        await engine.dispose()


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".data/postgres"))
@click.option("--key-file", type=click.Path(path_type=Path), default=Path(".data/secret_key"))
@click.option("--local-port", type=int, default=5432, show_default=True)
def dev(data_dir: Path, key_file: Path, local_port: int) -> None:
    """What `make run` does: find a database, create and migrate it, then serve.

    The database is DATABASE_URL when set, else PostgreSQL on localhost:LOCAL_PORT, else an
    embedded PostgreSQL under DATA_DIR (development only). Without SECRET_KEY the key is
    KEY_FILE's, made at random on the first run, so tokens outlive a restart.
    """
    from app.db import bootstrap

    # From here on: a SIGTERM while the embedded server starts or migrations run must still
    # reach the atexit hook that stops that server.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if get_settings().signing_secret is None:
        os.environ["SECRET_KEY"] = dev_secret_key(key_file)
    if "DATABASE_URL" in os.environ or (Path(".env").exists() and _env_file_sets_database()):
        url = str(get_settings().database_url)
    elif bootstrap.port_open("127.0.0.1", local_port):
        url = bootstrap.local_url(local_port)
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


def dev_secret_key(path: Path) -> str:
    """The key kept in PATH (mode 0600), made at random when PATH does not exist yet."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Written whole under another name, then linked: a concurrent run sees no half file,
        # and of two runs racing, one key wins and both use it.
        fd, draft = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(48) + "\n")
            try:
                os.link(draft, path)
                log.warning("SECRET_KEY is not set: generated a development key", path=str(path))
            except FileExistsError:
                pass
        finally:
            os.unlink(draft)
        return dev_secret_key(path)
    if mode & 0o077:
        raise click.ClickException(f"{path} is readable by others: `chmod 600` it or remove it")
    key = path.read_text().strip()
    if not key:
        raise click.ClickException(f"{path} is empty: remove it and a new key is made")
    return key
