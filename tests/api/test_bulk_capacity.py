"""Bulk work has its own bounded capacity: slow exports never starve the other requests.

A real server (`catalog serve`, the production pool of 20 and no overflow) and a seeded catalog
big enough that an export is many chunks and far more than the socket buffers hold, so a client
that reads slowly really keeps its export (and its connection) busy. The slow readers are raw
sockets with a small receive buffer that read a few bytes, then sleep.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.db.bootstrap import asyncpg_dsn
from app.services.bulk_capacity import BulkCapacity, BulkCapacityFull, BulkUserLimit
from tests.conftest import Users, bearer
from tests.factories import product_data
from tests.ops.server import Server, running_server

pytestmark = pytest.mark.slow

PRODUCTS = 12_000  # 12 chunks of 1,000 rows, some 10 MB of NDJSON
SLOTS = 4
PER_USER = 2
DEADLINE = 9.0
BULK_ENV = {
    "DB_POOL_SIZE": "20",
    "DB_MAX_OVERFLOW": "0",
    "BULK_POOL_SIZE": str(SLOTS),
    "BULK_MAX_PER_USER": str(PER_USER),
    "BULK_QUEUE_SECONDS": "0.5",
    "BULK_EXPORT_DEADLINE_SECONDS": str(DEADLINE),
}
OTHER_VIEWERS = 5
TIMEOUT = 20.0


@dataclass
class Catalog:
    users: Users
    viewers: list[int]  # the viewer of `users` and OTHER_VIEWERS more
    tokens: dict[int, str] = field(default_factory=dict)


@pytest.fixture
async def catalog(
    app: object, users: Users, settings: Settings, editor: httpx.AsyncClient
) -> Catalog:
    """PRODUCTS products (imported) and OTHER_VIEWERS more viewers, committed for the server."""
    engine = app.state.engine  # type: ignore[attr-defined]
    async with engine.begin() as connection:
        ids = [
            (
                await connection.execute(
                    text(
                        "INSERT INTO users (email, password_hash, role) "
                        "SELECT :e, password_hash, 'viewer' FROM users WHERE id = :v RETURNING id"
                    ),
                    {"e": f"viewer{n}@example.com", "v": users.viewer},
                )
            ).scalar_one()
            for n in range(OTHER_VIEWERS)
        ]
    rows = (product_data(description="x" * 800) for _ in range(PRODUCTS))
    response = await editor.post(
        "/products/import",
        content=b"".join(json.dumps(row).encode() + b"\n" for row in rows),
        headers={"Content-Type": "application/x-ndjson"},
        timeout=TIMEOUT,
    )
    assert response.json()["created"] == PRODUCTS
    result = Catalog(users, [users.viewer, *ids])
    for user_id, role in [
        (users.admin, "admin"),
        (users.editor, "editor"),
        *((viewer, "viewer") for viewer in result.viewers),
    ]:
        result.tokens[user_id] = bearer(settings, user_id, role)["Authorization"]
    return result


@dataclass
class Export:
    """One GET /products/export on a raw socket that reads only when told to."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    headers: dict[str, str]
    body: bytearray

    def close(self) -> None:
        self.writer.close()


async def open_export(port: int, authorization: str) -> Export:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader's small window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(
        b"GET /products/export HTTP/1.1\r\nHost: catalog\r\n"
        b"Authorization: " + authorization.encode() + b"\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines if line)
    }
    export = Export(reader, writer, int(status_line.split()[1]), headers, bytearray())
    if "content-length" in headers:  # a refusal: read its problem whole
        export.body += await reader.readexactly(int(headers["content-length"]))
    return export


async def read_slowly(export: Export) -> None:
    """A few bytes, then a pause, until cancelled (or the server closes the connection)."""
    while chunk := await export.reader.read(64):
        export.body += chunk
        await asyncio.sleep(0.2)


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """The body of a chunked message, and whether its last (empty) chunk arrived."""
    body = bytearray()
    while True:
        size_line, found, rest = data.partition(b"\r\n")
        if not found:
            return bytes(body), False
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(body), True
        if len(rest) < size + 2:
            return bytes(body + rest[:size]), False
        body += rest[:size]
        data = rest[size + 2 :]


async def in_transaction(settings: Settings) -> int:
    """The server's connections that sit in a transaction, waiting on their client."""
    database_url = str(settings.database_url)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'catalog-service' AND state = 'idle in transaction'"
        )
        return int(count)
    finally:
        await connection.close()


async def until_in_transaction(settings: Settings, expected: int) -> int:
    deadline = time.monotonic() + 5
    while (count := await in_transaction(settings)) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return count


@dataclass
class Reads:
    statuses: Counter[int] = field(default_factory=Counter)
    slowest: float = 0.0


async def read_products(
    server: Server, authorization: str, stop: asyncio.Event, reads: Reads
) -> None:
    """GET /products/{id} one after another, timing each, until `stop`."""
    rng = random.Random(7)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": authorization}, timeout=TIMEOUT
    ) as http:
        while not stop.is_set():
            started = time.perf_counter()
            response = await http.get(f"/products/{rng.randint(1, PRODUCTS)}")
            reads.slowest = max(reads.slowest, time.perf_counter() - started)
            reads.statuses[response.status_code] += 1
            await asyncio.sleep(0.01)


def assert_refusal(export: Export) -> None:
    assert export.status in (429, 503), export.status
    assert export.headers["content-type"] == "application/problem+json"
    assert int(export.headers["retry-after"]) >= 1
    assert json.loads(export.body)["status"] == export.status


@pytest.fixture
async def exports() -> AsyncIterator[list[Export]]:
    opened: list[Export] = []
    yield opened
    for export in opened:
        export.close()


async def test_slow_exports_never_starve_reads_and_are_cut_at_their_deadline(
    catalog: Catalog, settings: Settings, tmp_path: Path, exports: list[Export]
) -> None:
    one_user = catalog.tokens[catalog.users.viewer]
    others = [catalog.tokens[viewer] for viewer in catalog.viewers[1:]]
    with running_server(settings, tmp_path, **BULK_ENV) as server:
        stop = asyncio.Event()
        reads = Reads()
        reading = asyncio.create_task(read_products(server, one_user, stop, reads))
        started = time.monotonic()
        # 10 exports from one user, then 15 from five others (3 each), all read slowly.
        exports += await asyncio.gather(*(open_export(server.port, one_user) for _ in range(10)))
        exports += await asyncio.gather(
            *(open_export(server.port, token) for token in others for _ in range(3))
        )
        streaming = [export for export in exports if export.status == 200]
        slow = [asyncio.create_task(read_slowly(export)) for export in streaming]
        await asyncio.sleep(4)  # reads go on while the slow exports hold their slots
        held = await in_transaction(settings)
        late = await open_export(server.port, catalog.tokens[catalog.users.admin])
        exports.append(late)
        stop.set()
        await reading

        statuses = Counter(export.status for export in exports[:25])
        print(
            f"\nexports: {dict(statuses)}; reads: {dict(reads.statuses)}, "
            f"slowest {reads.slowest * 1000:.0f} ms; in transaction: {held}"
        )
        assert statuses[200] == SLOTS
        assert sum(export.status == 200 for export in exports[:10]) <= PER_USER
        # The one user's excess is 429 at once (its share), the others' mostly 503 (all slots).
        assert statuses[429] >= 10 - PER_USER
        assert statuses[503] >= 1
        for export in exports[:25]:
            if export.status != 200:
                assert_refusal(export)
        assert late.status == 503
        assert_refusal(late)
        assert held == SLOTS  # each export keeps its snapshot: one transaction per stream
        assert reads.statuses[200] > 50
        assert set(reads.statuses) == {200}
        assert reads.slowest < 1.0

        # Past the deadline every slow export is cut: an incomplete chunked body, and its
        # connection (with its transaction) gone from the server.
        await asyncio.sleep(max(0.0, started + DEADLINE + 0.5 - time.monotonic()))
        for task in slow:
            task.cancel()
        for export in streaming:
            export.body += await asyncio.wait_for(export.reader.read(), TIMEOUT)
            body, complete = dechunk(bytes(export.body))
            assert not complete
            assert 0 < body.count(b"\n") < PRODUCTS
        assert await until_in_transaction(settings, 0) == 0

        # Capacity came back: a new export (a client reading fast) is whole.
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": one_user}, timeout=TIMEOUT
        ) as http:
            response = await http.get("/products/export")
        assert response.status_code == 200
        lines = response.content.splitlines()
        assert len(lines) == PRODUCTS
        assert json.loads(lines[-1])["id"] == PRODUCTS
    cut = [line for line in server.lines() if "export cut off at its deadline" in line]
    assert len(cut) == SLOTS


async def import_refused(
    server: Server, authorization: str, settings: Settings, status: int
) -> None:
    rows = [product_data() for _ in range(3)]
    body = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": authorization}, timeout=TIMEOUT
    ) as http:
        response = await http.post(
            "/products/import", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    connection = await asyncpg.connect(asyncpg_dsn(str(settings.database_url)))
    try:
        assert await connection.fetchval("SELECT count(*) FROM products") == PRODUCTS
        written = await connection.fetchval(
            "SELECT count(*) FROM products WHERE sku = ANY($1::text[])",
            [row["sku"] for row in rows],
        )
        assert written == 0
    finally:
        await connection.close()


async def test_an_import_beyond_the_cap_is_refused_and_writes_nothing(
    catalog: Catalog, settings: Settings, tmp_path: Path, exports: list[Export]
) -> None:
    editor = catalog.tokens[catalog.users.editor]
    with running_server(settings, tmp_path, **BULK_ENV) as server:
        # The editor's share, held by two exports it does not read.
        exports += await asyncio.gather(*(open_export(server.port, editor) for _ in range(2)))
        await import_refused(server, editor, settings, 429)
        # Every slot, with two more exports from a viewer.
        viewer = catalog.tokens[catalog.users.viewer]
        exports += await asyncio.gather(*(open_export(server.port, viewer) for _ in range(2)))
        assert [export.status for export in exports] == [200] * SLOTS
        await import_refused(server, catalog.tokens[catalog.users.admin], settings, 503)

        # Clients that go away give their slots back at once.
        for export in exports:
            export.close()
        assert await until_in_transaction(settings, 0) == 0
        rows = [product_data() for _ in range(3)]
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": editor}, timeout=TIMEOUT
        ) as http:
            response = await http.post(
                "/products/import",
                content=b"".join(json.dumps(row).encode() + b"\n" for row in rows),
                headers={"Content-Type": "application/x-ndjson"},
            )
        assert response.status_code == 200, response.text
        assert response.json()["created"] == 3


async def test_a_slot_freed_within_the_queue_time_goes_to_the_waiting_operation() -> None:
    capacity = BulkCapacity(slots=1, per_user=2, queue_seconds=2.0)
    held = await capacity.acquire(1)
    waiting = asyncio.create_task(capacity.acquire(2))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    held.release()
    lease = await asyncio.wait_for(waiting, 1)
    assert lease.user_id == 2
    assert capacity.in_use == 1


async def test_a_lease_released_twice_frees_one_slot() -> None:
    capacity = BulkCapacity(slots=2, per_user=2, queue_seconds=0)
    first = await capacity.acquire(1)
    await capacity.acquire(2)
    first.release()
    first.release()
    assert capacity.in_use == 1
    await capacity.acquire(3)
    with pytest.raises(BulkCapacityFull):
        await capacity.acquire(4)


async def test_a_user_waiting_for_a_slot_counts_against_its_share() -> None:
    capacity = BulkCapacity(slots=1, per_user=2, queue_seconds=0.3)
    await capacity.acquire(1)
    waiting = asyncio.create_task(capacity.acquire(1))
    await asyncio.sleep(0.05)
    with pytest.raises(BulkUserLimit) as refused:
        await capacity.acquire(1)
    assert refused.value.headers["Retry-After"] == "5"
    with pytest.raises(BulkCapacityFull):
        await waiting
    # The wait that timed out gave its place in the user's share back: no 429 now, a 503.
    with pytest.raises(BulkCapacityFull):
        await capacity.acquire(1)
