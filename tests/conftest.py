"""Test fixtures: a real PostgreSQL (never SQLite, never a mock) and a real Redis.

Where they come from (tests/support/backends.py; the run's header, or its summary under -q,
names the choice and why): TEST_DATABASE_URL / TEST_REDIS_URL if set, else testcontainers
when a Docker daemon answers, else the local servers (PostgreSQL in a throwaway database).
The schema is built once per run by the Alembic migrations; each test starts from truncated
tables (the read path uses its own pooled connections, so an outer rollback could not isolate).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Environment, Settings
from app.core.security import create_access_token, hash_password
from app.db import bootstrap
from app.main import create_app
from app.services.login_throttle import LoginThrottle
from tests.support import backends
from tests.support.tcp_proxy import TcpProxy

TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
PASSWORD = "correct horse battery staple"
TABLES = "stock_adjustments, idempotency_keys, refresh_tokens, products, categories, users"


def pytest_report_header(config: pytest.Config) -> list[str]:
    return backends.describe()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # -q drops the header; the choice is then said once at the end instead.
    if terminalreporter.config.get_verbosity() < 0:
        for line in backends.describe():
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    choice = backends.database_choice()
    if choice.kind == "env":
        url = os.environ["TEST_DATABASE_URL"]
        bootstrap.migrate(url)
        yield url
    elif choice.kind == "container":
        with backends.postgres_container() as url:
            bootstrap.migrate(url)
            yield url
    else:
        url = backends.local_database_url()
        try:
            bootstrap.migrate(url)
            yield url
        finally:
            asyncio.run(bootstrap.drop_database(url))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    choice = backends.redis_choice()
    if choice.kind == "container":
        with backends.redis_container() as url:
            yield url
    else:
        yield os.environ.get("TEST_REDIS_URL", backends.LOCAL_REDIS_URL)


def make_settings(database_url: str, redis_url: str | None, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": Environment.test,
        "database_url": database_url,
        "redis_url": redis_url,
        "secret_key": TEST_SECRET,
        "db_pool_size": 5,
        "db_max_overflow": 20,
        "db_pool_timeout": 3,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        # Login-failure counters live in the shared Redis for minutes; a prefix of this run's
        # own keeps an earlier run's failures from throttling this one.
        application.state.login_throttle = LoginThrottle.from_settings(
            settings, application.state.redis, key_prefix=f"test-{uuid.uuid4().hex[:8]}"
        )
        yield application


@pytest.fixture
async def isolated_throttle(app: FastAPI) -> AsyncIterator[LoginThrottle]:
    """Login-failure counters of this test only."""
    original = app.state.login_throttle
    throttle = LoginThrottle.from_settings(
        app.state.settings, app.state.redis, key_prefix=f"test-login-{uuid.uuid4().hex}"
    )
    app.state.login_throttle = throttle
    try:
        yield throttle
    finally:
        app.state.login_throttle = original
        await throttle.reset()


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


@dataclass
class Users:
    admin: int
    editor: int
    viewer: int


@pytest.fixture
async def users(app: object, password_hash: str) -> Users:
    """A clean database with one user per role (ids 1, 2, 3)."""
    engine = app.state.engine  # type: ignore[attr-defined]
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        for role in ("admin", "editor", "viewer"):
            await connection.execute(
                text("INSERT INTO users (email, password_hash, role) VALUES (:e, :h, :r)"),
                {"e": f"{role}@example.com", "h": password_hash, "r": role},
            )
    app.state.principals._entries.clear()  # type: ignore[attr-defined]
    return Users(admin=1, editor=2, viewer=3)


def bearer(settings: Settings, user_id: int, role: str) -> dict[str, str]:
    token, _ = create_access_token(settings, user_id=user_id, role=role)
    return {"Authorization": f"Bearer {token}"}


def _client(app: object, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


@pytest.fixture
async def client(app: object, users: Users) -> AsyncIterator[httpx.AsyncClient]:
    """No credentials."""
    async with _client(app) as c:
        yield c


@pytest.fixture
async def admin(app: object, users: Users, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, bearer(settings, users.admin, "admin")) as c:
        yield c


@pytest.fixture
async def editor(app: object, users: Users, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, bearer(settings, users.editor, "editor")) as c:
        yield c


@pytest.fixture
async def viewer(app: object, users: Users, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, bearer(settings, users.viewer, "viewer")) as c:
        yield c


@pytest.fixture
async def proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the test database, which a test can cut or make silent."""
    url = make_url(str(settings.database_url))
    tcp_proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await tcp_proxy.start()
    yield tcp_proxy
    await tcp_proxy.close()


def settings_through(proxy: TcpProxy, settings: Settings, **overrides: object) -> Settings:
    """Settings like the suite's, but reaching the database through `proxy` and without Redis."""
    url = make_url(str(settings.database_url)).set(host="127.0.0.1", port=proxy.port)
    return make_settings(url.render_as_string(hide_password=False), None, **overrides)


async def backend_pids(engine: AsyncEngine, count: int) -> list[int]:
    """The server pids behind `count` pooled connections, checked out together, then returned."""
    connections = [await engine.connect() for _ in range(count)]
    try:
        return [
            (await c.execute(text("SELECT pg_backend_pid()"))).scalar_one() for c in connections
        ]
    finally:
        for connection in connections:
            await connection.close()
