"""PostgreSQL restarts under load: never a 500, every failure a 503 with Retry-After, and
service back within seconds.

A private cluster (tests/support/pg_cluster.py), migrated, behind a real `catalog serve`;
30 clients read (GET /products/{id}, GET /products) and write (stock changes, PATCH) while the
server is crashed (`pg_ctl stop -m immediate`; the start after it recovers, and its connects
get 57P03 "starting up") and then shut down (`-m fast`: 57P01 to every session, 57P03
"shutting down" to new connects) and started again.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.db import bootstrap
from tests.conftest import bearer, make_settings
from tests.factories import product_data
from tests.ops.server import free_port, running_server
from tests.support.pg_cluster import Cluster, private_cluster

pytestmark = pytest.mark.slow

CONCURRENCY = 30
PRODUCTS = 20
WARM_SECONDS = 1.0
DOWN_SECONDS = 0.5
AFTER_SECONDS = 2.0
RESUME_WITHIN_SECONDS = 5.0


@dataclass(frozen=True)
class Answer:
    at: float
    operation: str
    status: int  # 0: no HTTP answer at all
    retry_after: str | None
    content_type: str | None


@dataclass
class Restart:
    mode: str
    started_at: float = 0.0  # pg_ctl start issued
    ready_at: float = 0.0  # pg_ctl start returned: the server accepts connections


async def seed(cluster: Cluster) -> int:
    """An editor account, by SQL: the service only checks that the token's user is active."""
    connection = await asyncpg.connect(bootstrap.asyncpg_dsn(cluster.url))
    try:
        return int(
            await connection.fetchval(
                "INSERT INTO users (email, password_hash, role) "
                "VALUES ('editor@example.com', 'not-a-hash', 'editor') RETURNING id"
            )
        )
    finally:
        await connection.close()


async def drive(
    http: httpx.AsyncClient, ids: list[int], answers: list[Answer], stop: asyncio.Event, worker: int
) -> None:
    for n in itertools.count(worker):
        if stop.is_set():
            return
        operation = OPERATIONS[n % len(OPERATIONS)]
        product = f"/products/{ids[n % len(ids)]}"
        try:
            response = await request(http, operation, product, n)
        except httpx.TransportError:
            answers.append(Answer(time.monotonic(), operation, 0, None, None))
            continue
        answers.append(
            Answer(
                time.monotonic(),
                operation,
                response.status_code,
                response.headers.get("retry-after"),
                response.headers.get("content-type"),
            )
        )


OPERATIONS = ("read", "list", "stock", "patch")


async def request(http: httpx.AsyncClient, operation: str, product: str, n: int) -> httpx.Response:
    if operation == "read":
        return await http.get(product)
    if operation == "list":
        return await http.get("/products", params={"limit": 20})
    if operation == "stock":
        return await http.post(f"{product}/stock", json={"delta": 1})
    return await http.patch(product, json={"name": f"renamed {n}"})


def first_success_after(answers: list[Answer], moment: float) -> float | None:
    times = [a.at for a in answers if a.at > moment and 200 <= a.status < 300]
    return min(times) - moment if times else None


async def test_restarts_under_load_give_503_never_500(tmp_path: Path) -> None:
    started = time.monotonic()
    with private_cluster(free_port()) as cluster:
        await asyncio.to_thread(bootstrap.migrate, cluster.url)
        editor = await seed(cluster)
        settings = make_settings(cluster.url, None)
        with running_server(settings, tmp_path) as server:
            headers = bearer(settings, editor, "editor")
            limits = httpx.Limits(max_connections=CONCURRENCY)
            async with httpx.AsyncClient(
                base_url=server.base_url, headers=headers, timeout=10, limits=limits
            ) as http:
                ids = []
                for _ in range(PRODUCTS):
                    created = await http.post("/products", json=product_data(stock=1000))
                    assert created.status_code == 201, created.text
                    ids.append(int(created.json()["id"]))

                answers: list[Answer] = []
                stop = asyncio.Event()
                workers = [
                    asyncio.create_task(drive(http, ids, answers, stop, worker))
                    for worker in range(CONCURRENCY)
                ]
                restarts = [Restart("immediate"), Restart("fast")]
                try:
                    await asyncio.sleep(WARM_SECONDS)
                    for restart in restarts:
                        await asyncio.to_thread(cluster.stop, restart.mode)
                        await asyncio.sleep(DOWN_SECONDS)
                        restart.started_at = time.monotonic()
                        await asyncio.to_thread(cluster.start)
                        restart.ready_at = time.monotonic()
                        await asyncio.sleep(AFTER_SECONDS)
                finally:
                    stop.set()
                    await asyncio.gather(*workers)

        log = server.output()
        database_log = cluster.log()
    elapsed = time.monotonic() - started

    statuses = collections.Counter(a.status for a in answers)
    by_operation = collections.Counter((a.operation, a.status) for a in answers)
    errors = collections.Counter(
        line.split('"error":"')[1].split('"')[0]
        for line in log.splitlines()
        if '"database unavailable"' in line
    )
    refused_connects = {
        "starting up": database_log.count("the database system is starting up"),
        "shutting down": database_log.count("the database system is shutting down"),
        "not yet accepting": database_log.count("not yet accepting connections"),
    }
    resumed = {r.mode: first_success_after(answers, r.ready_at) for r in restarts}
    print(
        f"\n{len(answers)} answers in {elapsed:.1f}s: {dict(statuses)}"
        f"\nby operation: {dict(sorted(by_operation.items()))}"
        f"\n503 causes (server log): {dict(errors)}"
        f"\nconnects refused by PostgreSQL: {refused_connects}"
        f"\nfirst 2xx after pg_ctl start returned: "
        + ", ".join(
            f"{mode} {s:.3f}s" if s is not None else f"{mode} never" for mode, s in resumed.items()
        )
    )

    assert statuses[500] == 0, [a for a in answers if a.status >= 500 and a.status != 503][:5]
    assert statuses[0] == 0, "every request got an HTTP answer"
    failures = [a for a in answers if not 200 <= a.status < 300]
    assert failures, "the restarts were noticed (else this test proves nothing)"
    for answer in failures:
        assert answer.status == 503, answer
        assert answer.retry_after is not None, answer
        assert int(answer.retry_after) > 0, answer
        assert answer.content_type == "application/problem+json", answer
    for mode, seconds in resumed.items():
        assert seconds is not None, mode
        assert seconds < RESUME_WITHIN_SECONDS, (mode, seconds)
    assert elapsed < 60
