"""What lending a pooled connection costs: the service's way against asyncpg's pool and a queue.

    .venv/bin/python -m bench.lend_bench [--lends 20000] [--rounds 3]

Needs PostgreSQL on 127.0.0.1:5432 (or `--database-url`); it creates no table. Each lender
keeps 20 connections, as the service's pool and the ceiling's do, and is asked for one and
given it back `--lends` times by 1 task and by 64 at once (the concurrency `make bench` loads
with); no query runs on the lent connection, so what is measured is the lending alone:

- **service**: `app.db.session.read_connection`, the one way the service borrows a connection:
  SQLAlchemy's queue pool of the engine `build_engine` makes, with the service's checkout
  ping and checkin hooks, through a greenlet each way.
- **asyncpg pool**: `asyncpg.create_pool` with a no-op `reset`, as `bench/ceiling_app.py` has.
- **queue**: an `asyncio.Queue` of open connections, the floor of any lender in Python.

It prints the process CPU time per lend (the median of the rounds, interleaved) and each
lender's ratio to the queue. Only the ratios mean something, and only within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg

from app.core.config import Settings
from app.db import bootstrap
from app.db.engine import build_engine
from app.db.session import read_connection
from bench.ceiling_app import no_reset

POOL_SIZE: int = Settings.model_fields["db_pool_size"].default  # the service's default
CONCURRENCY = (1, 64)
Lend = Callable[[], AbstractAsyncContextManager[Any]]


async def cpu_per_lend(lend: Lend, lends: int, tasks: int) -> float:
    """Process CPU seconds per lend when `tasks` tasks share `lends` lends."""

    async def borrower(count: int) -> None:
        for _ in range(count):
            async with lend():
                pass

    each, extra = divmod(lends, tasks)
    started = time.process_time()
    await asyncio.gather(*(borrower(each + (i < extra)) for i in range(tasks)))
    return (time.process_time() - started) / lends


@asynccontextmanager
async def lenders(database_url: str) -> AsyncIterator[dict[str, Lend]]:
    """The three lenders, each holding `POOL_SIZE` open connections."""
    engine = build_engine(
        Settings(_env_file=None, database_url=database_url, secret_key="lend-bench-" * 4)
    )
    dsn = bootstrap.asyncpg_dsn(database_url)
    pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE, reset=no_reset)
    queue: asyncio.Queue[asyncpg.Connection] = asyncio.Queue()
    for _ in range(POOL_SIZE):
        queue.put_nowait(await asyncpg.connect(dsn))

    @asynccontextmanager
    async def from_queue() -> AsyncIterator[asyncpg.Connection]:
        connection = await queue.get()
        try:
            yield connection
        finally:
            queue.put_nowait(connection)

    try:
        # Open every connection of the service's pool before timing, as the others are.
        async with AsyncExitStack() as held:
            for _ in range(POOL_SIZE):
                await held.enter_async_context(read_connection(engine))
        yield {
            "service": lambda: read_connection(engine),
            "asyncpg pool": pool.acquire,
            "queue": from_queue,
        }
    finally:
        while not queue.empty():
            await queue.get_nowait().close()
        await pool.close()
        await engine.dispose()


async def measure(database_url: str, lends: int, rounds: int) -> dict[tuple[str, int], float]:
    """The median CPU seconds per lend, by (lender, tasks), over interleaved rounds."""
    samples: dict[tuple[str, int], list[float]] = {}
    async with lenders(database_url) as by_name:
        for lend in by_name.values():  # warm-up
            await cpu_per_lend(lend, 500, 64)
        for _ in range(rounds):
            for tasks in CONCURRENCY:
                for name, lend in by_name.items():
                    sample = await cpu_per_lend(lend, lends, tasks)
                    samples.setdefault((name, tasks), []).append(sample)
    return {key: statistics.median(values) for key, values in samples.items()}


def table(medians: dict[tuple[str, int], float]) -> str:
    lines = [
        "| lender | tasks | CPU us per lend | ratio to the queue |",
        "|---|---:|---:|---:|",
    ]
    for (name, tasks), seconds in medians.items():
        ratio = seconds / medians[("queue", tasks)]
        lines.append(f"| {name} | {tasks} | {seconds * 1e6:.1f} | {ratio:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--lends", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    medians = asyncio.run(measure(args.database_url, args.lends, args.rounds))
    print(table(medians))


if __name__ == "__main__":
    main()
