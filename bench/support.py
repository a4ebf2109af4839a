"""What the benchmarks share: a free port, waiting for a server, a user to log in as."""

from __future__ import annotations

import socket
import time

import asyncpg
import httpx

from app.core.security import hash_password
from app.db import bootstrap


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f}s")


async def add_user(url: str, email: str, role: str, password: str = "bench-password") -> None:
    connection = await asyncpg.connect(bootstrap.asyncpg_dsn(url))
    try:
        await connection.execute(
            "INSERT INTO users (email, password_hash, role) VALUES ($1, $2, $3)",
            email,
            hash_password(password),
            role,
        )
    finally:
        await connection.close()
