"""Where a test run's PostgreSQL and Redis come from: decided once per run, said once per run.

For each of them, in order:
1. the URL in TEST_DATABASE_URL / TEST_REDIS_URL, when set;
2. a testcontainers container, when a Docker daemon answers at DOCKER_HOST;
3. the local server (127.0.0.1:5432 in a throwaway database, 127.0.0.1:6379 database 15).
Containers run inside `with` blocks of the session fixtures, so they are removed when the run
ends even with Ryuk (testcontainers' reaper, for runs that are killed) switched off.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy.engine import make_url

POSTGRES_IMAGE = "postgres:15-alpine"
REDIS_IMAGE = "redis:7-alpine"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/15"
LOCAL_SERVER = "127.0.0.1:5432"


@dataclass(frozen=True)
class Docker:
    host: str
    answers: bool
    ryuk: bool = False
    ryuk_note: str = ""


@dataclass(frozen=True)
class Choice:
    kind: str  # "env", "container" or "local"
    what: str  # a URL (password hidden) or an image
    why: str


def _docker_request(host: str, method: str, path: str, timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.0 request to the Docker API; (status, body), status 0 when nothing answers.

    By hand rather than with docker-py, whose client leaks its socket (a ResourceWarning, an
    error under this suite's warning filter) and probes slowly when no daemon is there.
    """
    try:
        if host.startswith("unix://"):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            name, _, port = host.removeprefix("tcp://").partition(":")
            address = (name, int(port or 2375))
        else:
            return 0, b""
        with conn:
            conn.settimeout(timeout)
            conn.connect(address)
            conn.sendall(f"{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError:
        return 0, b""
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body


def _image_present(host: str, image: str) -> bool:
    return _docker_request(host, "GET", f"/images/{quote(image, safe='')}/json", 5)[0] == 200


@functools.cache
def docker() -> Docker:
    """Whether a daemon answers, and whether Ryuk can run (its image is here or can be pulled)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if _docker_request(host, "GET", "/_ping", 3)[0] != 200:
        return Docker(host, answers=False)
    from testcontainers.core.config import testcontainers_config

    if testcontainers_config.ryuk_disabled:
        return Docker(host, answers=True, ryuk_note="Ryuk off (TESTCONTAINERS_RYUK_DISABLED)")
    image = testcontainers_config.ryuk_image
    if not _image_present(host, image):
        repository, _, tag = image.rpartition(":")
        query = f"fromImage={quote(repository, safe='')}&tag={quote(tag, safe='')}"
        _docker_request(host, "POST", f"/images/create?{query}", 120)
    if _image_present(host, image):
        return Docker(host, answers=True, ryuk=True, ryuk_note="Ryuk on")
    # Only the reaper is given up: the fixtures' `with` blocks still remove the containers.
    testcontainers_config.ryuk_disabled = True
    return Docker(host, answers=True, ryuk_note=f"Ryuk off ({image} cannot be pulled)")


def _hidden(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _choice(variable: str, image: str, local: str) -> Choice:
    """The server named by `variable`, else a container of `image`, else the local one."""
    if url := os.environ.get(variable):
        return Choice("env", _hidden(url), f"{variable} is set")
    state = docker()
    if state.answers:
        why = f"a Docker daemon answers at {state.host}; {state.ryuk_note}"
        return Choice("container", f"testcontainers {image}", why)
    return Choice("local", local, f"{variable} unset, no Docker daemon at {state.host}")


@functools.cache
def database_choice() -> Choice:
    return _choice("TEST_DATABASE_URL", POSTGRES_IMAGE, f"{LOCAL_SERVER}, a throwaway database")


@functools.cache
def redis_choice() -> Choice:
    return _choice("TEST_REDIS_URL", REDIS_IMAGE, LOCAL_REDIS_URL)


def describe() -> list[str]:
    """The lines that tell a run's reader which servers it used and why."""
    return [
        f"test {name}: {choice.what} ({choice.why})"
        for name, choice in (("PostgreSQL", database_choice()), ("Redis", redis_choice()))
    ]


@contextmanager
def postgres_container() -> Iterator[str]:
    """A PostgreSQL container's asyncpg URL; the container is removed on exit."""
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver="asyncpg") as container:
        yield container.get_connection_url()


@contextmanager
def redis_container() -> Iterator[str]:
    """A Redis container's URL; the container is removed on exit."""
    from testcontainers.community.redis import RedisContainer

    with RedisContainer(REDIS_IMAGE) as container:
        host = container.get_container_host_ip()
        yield f"redis://{host}:{container.get_exposed_port(container.port)}/0"


def local_database_url() -> str:
    return f"postgresql+asyncpg://postgres@{LOCAL_SERVER}/catalog_test_{uuid.uuid4().hex[:10]}"
