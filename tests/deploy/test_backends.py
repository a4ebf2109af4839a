"""The test run's choice of PostgreSQL and Redis (tests/support/backends.py), in its order."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from testcontainers.core.config import testcontainers_config

from tests.support import backends


class FakeDaemon:
    """A unix socket answering the Docker API paths the probe uses, with fixed statuses."""

    def __init__(self, path: Path, statuses: dict[str, int]) -> None:
        self.path = path
        self.statuses = statuses
        self.requests: list[str] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                line = conn.recv(4096).split(b"\r\n", 1)[0].decode()
                self.requests.append(line)
                path = line.split(" ")[1]
                status = next((s for p, s in self.statuses.items() if path.startswith(p)), 404)
                conn.sendall(f"HTTP/1.0 {status} X\r\n\r\nOK".encode())

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("TEST_DATABASE_URL", "TEST_REDIS_URL", "TESTCONTAINERS_RYUK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(testcontainers_config, "_ryuk_disabled", None)
    cached = (backends.docker, backends.database_choice, backends.redis_choice)
    for function in cached:
        function.cache_clear()
    yield monkeypatch
    for function in cached:
        function.cache_clear()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Short: a unix socket path is limited to 108 bytes, which tmp_path can exceed.
    with tempfile.TemporaryDirectory(prefix="dk", dir="/tmp") as name:
        yield Path(name)


def test_urls_in_the_environment_come_first_and_hide_the_password(
    fresh: pytest.MonkeyPatch,
) -> None:
    fresh.setenv("TEST_DATABASE_URL", "postgresql+asyncpg://u:hunter2@db:5432/t")
    fresh.setenv("TEST_REDIS_URL", "redis://cache:6379/3")
    fresh.setenv("DOCKER_HOST", "unix:///nonexistent")
    assert backends.database_choice().kind == "env"
    assert backends.redis_choice().kind == "env"
    text = "\n".join(backends.describe())
    assert "hunter2" not in text
    url = "postgresql+asyncpg://u:***@db:5432/t"
    assert f"test PostgreSQL: {url} (TEST_DATABASE_URL is set)" in text
    assert "test Redis: redis://cache:6379/3 (TEST_REDIS_URL is set)" in text


def test_without_a_daemon_the_local_servers(fresh: pytest.MonkeyPatch) -> None:
    fresh.setenv("DOCKER_HOST", "unix:///nonexistent")
    assert backends.database_choice().kind == "local"
    assert backends.redis_choice().what == "redis://127.0.0.1:6379/15"
    assert "no Docker daemon at unix:///nonexistent" in backends.describe()[0]


def test_a_daemon_that_answers_means_containers_with_ryuk_when_its_image_is_there(
    fresh: pytest.MonkeyPatch, sock_dir: Path
) -> None:
    daemon = FakeDaemon(sock_dir / "docker.sock", {"/_ping": 200, "/images/": 200})
    try:
        fresh.setenv("DOCKER_HOST", f"unix://{daemon.path}")
        assert backends.database_choice().kind == "container"
        assert backends.redis_choice().kind == "container"
        assert backends.docker().ryuk
        assert not testcontainers_config.ryuk_disabled
        assert "Ryuk on" in backends.describe()[1]
    finally:
        daemon.close()


def test_ryuk_is_switched_off_only_when_its_image_cannot_be_had(
    fresh: pytest.MonkeyPatch, sock_dir: Path
) -> None:
    daemon = FakeDaemon(sock_dir / "docker.sock", {"/_ping": 200, "/images/create": 500})
    try:
        fresh.setenv("DOCKER_HOST", f"unix://{daemon.path}")
        state = backends.docker()
        assert state.answers
        assert not state.ryuk
        assert testcontainers_config.ryuk_disabled  # the reaper is not waited for, in vain
        assert any(r.startswith("POST /images/create?fromImage=") for r in daemon.requests)
        assert "cannot be pulled" in backends.describe()[0]
    finally:
        daemon.close()
