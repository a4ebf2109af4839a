"""SIGTERM: stop accepting, finish the request in flight (bounded by SHUTDOWN_TIMEOUT_SECONDS),
close the pool, exit 0.

The slow request is a real PATCH held up by a row lock that the test owns: the server's
`SELECT ... FOR UPDATE` waits until the test lets go.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from tests.conftest import Users, bearer
from tests.factories import product_data
from tests.ops.locks import product_row_lock
from tests.ops.server import running_server

TIMEOUT = 30.0
POOL_CLOSED = "stopped: connection pool closed"

pytestmark = pytest.mark.slow


async def wait_until_refused(port: int) -> None:
    """Until nothing listens on the port any more (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.02)
    raise AssertionError(f"port {port} still accepts connections after {TIMEOUT}s")


async def create_product(editor: httpx.AsyncClient) -> int:
    response = await editor.post("/products", json=product_data())
    assert response.status_code == 201
    return int(response.json()["id"])


async def test_request_in_flight_completes_after_sigterm(
    settings: Settings, users: Users, editor: httpx.AsyncClient, tmp_path: Path
) -> None:
    product_id = await create_product(editor)
    headers = bearer(settings, users.editor, "editor")
    with running_server(settings, tmp_path, SHUTDOWN_TIMEOUT_SECONDS="20") as server:
        async with (
            httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=TIMEOUT) as http,
            product_row_lock(settings, product_id) as lock,
        ):
            patch = asyncio.create_task(
                http.patch(f"/products/{product_id}", json={"name": "finished while draining"})
            )
            await lock.wait_for_waiters()
            server.terminate()
            await wait_until_refused(server.port)
            assert not patch.done(), "the request ended before the lock was released"
            await lock.release()
            response = await asyncio.wait_for(patch, TIMEOUT)
        exit_code = await asyncio.to_thread(server.wait, TIMEOUT)

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "finished while draining"
    assert exit_code == 0
    lines = server.json_lines()
    events = [line["event"] for line in lines]
    patch_line = next(
        index
        for index, line in enumerate(lines)
        if line.get("method") == "PATCH" and line.get("status") == 200
    )
    assert events.index("Shutting down") < patch_line < events.index(POOL_CLOSED)
    refetched = await editor.get(f"/products/{product_id}")
    assert refetched.json()["name"] == "finished while draining"


async def test_shutdown_is_bounded_by_the_setting(
    settings: Settings, users: Users, editor: httpx.AsyncClient, tmp_path: Path
) -> None:
    product_id = await create_product(editor)
    headers = bearer(settings, users.editor, "editor")
    with running_server(settings, tmp_path, SHUTDOWN_TIMEOUT_SECONDS="1") as server:
        async with (
            httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=TIMEOUT) as http,
            product_row_lock(settings, product_id) as lock,
        ):
            patch = asyncio.create_task(
                http.patch(f"/products/{product_id}", json={"name": "never applied"})
            )
            await lock.wait_for_waiters()
            started = time.monotonic()
            server.terminate()
            # The lock is never released: the server must give up on the request by itself.
            exit_code = await asyncio.to_thread(server.wait, TIMEOUT)
            elapsed = time.monotonic() - started
            outcome = await asyncio.gather(patch, return_exceptions=True)

    assert exit_code == 0
    assert 1.0 <= elapsed < 10.0
    [result] = outcome
    assert isinstance(result, httpx.TransportError) or result.status_code >= 500
    events = [line["event"] for line in server.json_lines()]
    assert any("timeout graceful shutdown exceeded" in event for event in events)
    assert POOL_CLOSED in events
    unchanged = await editor.get(f"/products/{product_id}")
    assert unchanged.json()["name"] != "never applied"
