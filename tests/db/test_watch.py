"""The database watch: aborts the pool when the server stops answering, and only then."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.logging import configure_logging
from app.db.engine import build_engine
from app.db.faults import DatabaseNotAnswering, is_unavailable
from app.db.watch import DatabaseWatch
from tests.conftest import backend_pids, settings_through
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def watched_settings(settings: Settings, proxy: TcpProxy) -> Settings:
    return settings_through(
        proxy,
        settings,
        db_pool_size=3,
        db_ping_timeout=0.5,
        db_connect_timeout=0.5,
        db_ping_idle_seconds=60,
        db_watch_interval_seconds=0.1,
    )


@pytest.fixture
def service_logging() -> None:
    """Log lines go through the standard library, as in the service (and so reach caplog)."""
    configure_logging()


@pytest.fixture
async def engine(watched_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = build_engine(watched_settings)
    yield engine
    await engine.dispose()


class TestAnswers:
    async def test_yes_while_the_server_answers(
        self, engine: AsyncEngine, watched_settings: Settings
    ) -> None:
        watch = DatabaseWatch(engine, watched_settings)
        assert await watch.answers()
        assert await watch.answers()  # on the connection it kept

    async def test_a_closed_watch_connection_is_not_a_dead_server(
        self, engine: AsyncEngine, watched_settings: Settings
    ) -> None:
        watch = DatabaseWatch(engine, watched_settings)
        assert await watch.answers()
        assert watch.own is not None
        pid = watch.own.get_server_pid()
        async with engine.connect() as connection:
            killed = (
                await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            ).scalar_one()
        assert killed
        assert await watch.answers()

    async def test_no_when_the_server_is_silent_or_gone(
        self, engine: AsyncEngine, watched_settings: Settings, proxy: TcpProxy
    ) -> None:
        watch = DatabaseWatch(engine, watched_settings)
        assert await watch.answers()
        await proxy.blackhole()
        started = asyncio.get_running_loop().time()
        assert not await watch.answers()
        assert asyncio.get_running_loop().time() - started < 1.5  # the 0.5 s ping timeout
        await proxy.refuse()
        assert not await watch.answers()
        await proxy.restore()
        assert await watch.answers()


class TestRun:
    async def test_keeps_the_pool_while_the_server_answers(
        self, engine: AsyncEngine, watched_settings: Settings
    ) -> None:
        watch = DatabaseWatch(engine, watched_settings)
        before = set(await backend_pids(engine, 3))
        task = asyncio.create_task(watch.run())
        try:
            await asyncio.sleep(0.6)  # six rounds
            assert set(await backend_pids(engine, 3)) == before
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert watch.own is None  # its connection went with it

    async def test_aborts_a_query_stuck_on_a_silent_server(
        self, engine: AsyncEngine, watched_settings: Settings, proxy: TcpProxy
    ) -> None:
        watch = DatabaseWatch(engine, watched_settings)
        await backend_pids(engine, 3)
        task = asyncio.create_task(watch.run())
        try:
            async with engine.connect() as connection:  # just used: lent without a ping
                await proxy.blackhole()
                started = asyncio.get_running_loop().time()
                with pytest.raises(DBAPIError) as raised:
                    await connection.execute(text("SELECT 1"))
                elapsed = asyncio.get_running_loop().time() - started
            assert raised.value.connection_invalidated  # a disconnect: 503, and not pooled again
            assert elapsed < 2.0  # interval 0.1 s + ping timeout 0.5 s, not the command timeout
            assert all(c.is_closed() for c in watch.pooled)
            await proxy.restore()
            # The pool stays shut until a round of the watch gets an answer: one that began
            # before the restore waits out its connect timeout (0.5 s) first.
            deadline = asyncio.get_running_loop().time() + 1.5
            while watch.silent and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert not watch.silent
            async with engine.connect() as connection:  # the pool connects anew
                assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    @pytest.mark.usefixtures("service_logging")
    async def test_one_warning_per_outage_and_one_line_when_back(
        self,
        engine: AsyncEngine,
        watched_settings: Settings,
        proxy: TcpProxy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        watch = DatabaseWatch(engine, watched_settings)
        task = asyncio.create_task(watch.run())
        try:
            await asyncio.sleep(0.3)
            await proxy.refuse()
            await asyncio.sleep(0.8)  # several rounds while the server is gone
            await proxy.restore()
            await asyncio.sleep(0.5)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        lines = [record.getMessage() for record in caplog.records if record.name == "app.db"]
        assert sum("database not answering" in line for line in lines) == 1, lines
        assert sum("database answering again" in line for line in lines) == 1, lines


async def timed_checkout(engine: AsyncEngine) -> tuple[BaseException | None, float]:
    started = asyncio.get_running_loop().time()
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        return error, asyncio.get_running_loop().time() - started
    return None, asyncio.get_running_loop().time() - started


class TestSilentServerShutsThePool:
    """While the server is silent a checkout fails at once, not after a ping or connect
    timeout of its own: requests queued for a pool slot would wait one each."""

    async def test_until_the_watch_gets_an_answer(
        self, engine: AsyncEngine, watched_settings: Settings, proxy: TcpProxy
    ) -> None:
        watch = DatabaseWatch(engine, watched_settings)
        assert await watch.answers()
        await proxy.blackhole()
        assert not await watch.answers()
        assert watch.silent
        error, elapsed = await timed_checkout(engine)
        assert isinstance(error, DatabaseNotAnswering)
        assert is_unavailable(error)
        assert elapsed < 0.1
        await proxy.restore()
        assert await watch.answers()
        assert not watch.silent
        error, _ = await timed_checkout(engine)
        assert error is None

    async def test_a_refusing_server_does_not_shut_it(
        self, engine: AsyncEngine, watched_settings: Settings, proxy: TcpProxy
    ) -> None:
        """A refused connect fails fast by itself; the pool stays open, ready for the restart."""
        watch = DatabaseWatch(engine, watched_settings)
        await proxy.refuse()
        assert not await watch.answers()
        assert not watch.silent
        await proxy.restore()
        error, _ = await timed_checkout(engine)
        assert error is None

    @pytest.mark.parametrize("pooled", [True, False], ids=["ping-timeout", "connect-timeout"])
    async def test_after_one_checkout_timed_out(
        self, watched_settings: Settings, proxy: TcpProxy, pooled: bool
    ) -> None:
        """A checkout ping (pooled connection) or connect (none pooled) that times out shuts the
        pool before the watch's next round: the checkouts after it fail at once."""
        pinging = watched_settings.model_copy(update={"db_ping_idle_seconds": 0.0})
        engine = build_engine(pinging)
        try:
            watch = DatabaseWatch(engine, pinging)
            if pooled:
                await backend_pids(engine, 1)
            await proxy.blackhole()
            error, elapsed = await timed_checkout(engine)
            assert error is not None
            assert is_unavailable(error)
            assert 0.4 < elapsed < 1.5  # the 0.5 s ping or connect timeout, once
            assert watch.silent
            error, elapsed = await timed_checkout(engine)
            assert isinstance(error, DatabaseNotAnswering)
            assert elapsed < 0.1
        finally:
            await engine.dispose()
