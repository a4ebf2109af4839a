"""What the benchmarks share: the service's production environment, a free port, waiting for a
server, a user to log in as."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import asyncpg
import httpx

from app.core.security import hash_password
from app.db import bootstrap

ROOT = Path(__file__).resolve().parents[1]
# Settings of the machine running the bench that must not leak into the served service.
_NOT_PASSED_ON = frozenset({"LOG_LEVEL", "LOG_FORMAT", "PUBLIC_READ", "CORS_ORIGINS"})


def production_env(database_url: str, secret_key: str) -> dict[str, str]:
    """The environment `catalog serve` runs in for a benchmark: as production runs it
    (JSON access lines at INFO, a strong SECRET_KEY, Redis), on `database_url`."""
    return {
        **{key: value for key, value in os.environ.items() if key not in _NOT_PASSED_ON},
        "PYTHONPATH": str(ROOT),
        "ENVIRONMENT": "production",
        "SECRET_KEY": secret_key,
        "DATABASE_URL": database_url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }


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
