"""bench.lend_bench times three lenders of the same real connections, each full before timing."""

from __future__ import annotations

from contextlib import AsyncExitStack

import asyncpg

from bench.lend_bench import POOL_SIZE, cpu_per_lend, lenders, table


async def test_each_lender_lends_an_open_connection_of_a_full_pool(database_url: str) -> None:
    async with lenders(database_url) as by_name:
        assert set(by_name) == {"service", "asyncpg pool", "queue"}
        for name, lend in by_name.items():
            held = []
            # POOL_SIZE borrowers at once get POOL_SIZE distinct live backends: nothing is
            # opened while timing, and nobody shares a connection.
            async with AsyncExitStack() as borrowed:
                for _ in range(POOL_SIZE):
                    connection = await borrowed.enter_async_context(lend())
                    assert isinstance(
                        connection, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
                    )
                    held.append(await connection.fetchval("SELECT pg_backend_pid()"))
            assert len(set(held)) == POOL_SIZE, name
            assert await cpu_per_lend(lend, 200, 8) > 0


def test_the_table_gives_each_lender_its_ratio_to_the_queue() -> None:
    medians = {
        ("service", 64): 80e-6,
        ("asyncpg pool", 64): 40e-6,
        ("queue", 64): 5e-6,
        ("service", 1): 60e-6,
        ("queue", 1): 4e-6,
    }
    lines = table(medians).splitlines()
    assert "| service | 64 | 80.0 | 16.0 |" in lines
    assert "| asyncpg pool | 64 | 40.0 | 8.0 |" in lines
    assert "| queue | 64 | 5.0 | 1.0 |" in lines
    assert "| service | 1 | 60.0 | 15.0 |" in lines
