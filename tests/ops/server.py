"""Run `catalog serve` in a subprocess on a free loopback port, and always stop it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.core.config import Settings

CATALOG = Path(sys.executable).parent / "catalog"
READY_TIMEOUT = 40.0
STOP_TIMEOUT = 20.0
# Settings a developer's shell may hold that would change what the server does.
_DROPPED_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "WORKERS", "HOST", "PORT")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def lines(self) -> list[str]:
        """Every line the server wrote, stdout then stderr."""
        return [line for line in self.output().splitlines() if line.strip()]

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        return self.process.wait(timeout=timeout)


def server_env(settings: Settings, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _DROPPED_ENV}
    env.update(
        {
            "DATABASE_URL": str(settings.database_url),
            "REDIS_URL": settings.redis_url or "",
            "SECRET_KEY": settings.secret_key.get_secret_value(),
            "ENVIRONMENT": settings.environment.value,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "DB_POOL_SIZE": "3",
            "DB_MAX_OVERFLOW": "2",
            "PYTHONUNBUFFERED": "1",
            **overrides,
        }
    )
    if not env["REDIS_URL"]:
        del env["REDIS_URL"]
    return env


def _wait_ready(server: Server, workers: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"server exited with {server.process.returncode}:\n{server.output()}"
            )
        started = server.output().count("Application startup complete")
        if started >= workers:
            try:
                if httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"server not ready in {READY_TIMEOUT}s:\n{server.output()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # The whole session: with several workers the children must go too.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def running_server(
    settings: Settings, directory: Path, *, workers: int = 1, **env: str
) -> Iterator[Server]:
    """`catalog serve` on 127.0.0.1, ready to answer; stopped (and killed if need be) after."""
    port = free_port()
    stdout_path, stderr_path = directory / "stdout.log", directory / "stderr.log"
    command = [str(CATALOG), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers)]
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            command,
            cwd=directory,  # no stray .env from the checkout
            env=server_env(settings, **env),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        server = Server(process, port, stdout_path, stderr_path)
        try:
            _wait_ready(server, workers)
            yield server
        finally:
            stop(process)
