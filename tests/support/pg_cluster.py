"""A private PostgreSQL cluster a test may stop, crash and start: never the shared one on 5432.

initdb into a fresh directory under /tmp, pg_ctl start on a free loopback port with its socket
in that directory; as the `postgres` user when the tests run as root (PostgreSQL refuses root).
Always stopped (immediate) and removed afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
TIMEOUT = 60.0


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass
class Cluster:
    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/catalog"

    def pg_ctl(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = _as_server_user([str(BIN / "pg_ctl"), "-D", str(self.data), *arguments])
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=check)

    def start(self, *, wait: bool = True) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "server.log")
        self.pg_ctl("-o", options, "-l", log, "-w" if wait else "-W", "start")

    def stop(self, mode: str) -> None:
        """`immediate` (a crash: the next start recovers), `fast` (57P01 to every session)."""
        self.pg_ctl("-m", mode, "-w", "stop")

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def private_cluster(port: int) -> Iterator[Cluster]:
    if not (BIN / "initdb").exists():
        raise RuntimeError(f"no PostgreSQL binaries in {BIN} (set PG_BIN)")
    directory = Path(tempfile.mkdtemp(prefix="catalog-pg-"))
    if os.geteuid() == 0:
        server_user = pwd.getpwnam("postgres")
        os.chown(directory, server_user.pw_uid, server_user.pw_gid)
    cluster = Cluster(directory, port)
    try:
        subprocess.run(
            _as_server_user(
                [str(BIN / "initdb"), "-D", str(cluster.data), "-A", "trust", "-U", "postgres"]
            ),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
        cluster.start()
        yield cluster
    finally:
        if cluster.data.exists():
            cluster.pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(directory, ignore_errors=True)
