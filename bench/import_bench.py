"""Bulk import through the real HTTP API: a fresh import, the same file again, and an export.

    .venv/bin/python -m bench.import_bench [--rows 100000]

Needs PostgreSQL on 127.0.0.1:5432. It creates a throwaway database with the category tree,
writes an NDJSON file of realistic products, serves the service with one uvicorn worker on
127.0.0.1, and times `POST /products/import` of the file (all rows new), of the same file
again (every row unchanged: nothing is written), and `GET /products/export`. Each step has a
time limit; the server is stopped and the database dropped at the end, whatever happened.

Beside each time: the CPU seconds the server process and the database's backends for the
bench database spent on the step (from /proc, so PostgreSQL must run on this machine), and
the load average. A fresh import is bound by the one backend that writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.core.config import Settings
from app.core.security import create_access_token
from app.db import bootstrap
from app.services.seed import COLUMNS, fake_product, seed_catalog
from bench.support import add_user, free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-key-0123456789-abcdefghijkl"
TARGET_SECONDS = 10.0
STEP_TIMEOUT = 300.0


async def prepare_database(url: str) -> dict[str, int]:
    """The category tree (seeded with no products) and an editor; returns category ids."""
    await seed_catalog(url, 0)
    await add_user(url, "bench-editor@example.com", "editor")
    connection = await asyncpg.connect(bootstrap.asyncpg_dsn(url))
    try:
        rows = await connection.fetch("SELECT name, id FROM categories WHERE parent_id IS NOT NULL")
        return {row["name"]: row["id"] for row in rows}
    finally:
        await connection.close()


def write_ndjson(path: Path, rows: int, categories: dict[str, int]) -> None:
    """Products shaped like `catalog seed` makes them, as the API takes them."""
    rng = random.Random(7)
    names = sorted(categories)
    now = datetime.now(UTC)
    with path.open("w") as file:
        for number in range(1, rows + 1):
            category = rng.choice(names)
            values = dict(
                zip(
                    COLUMNS,
                    fake_product(rng, number, category, categories[category], now),
                    strict=True,
                )
            )
            row: dict[str, Any] = {
                key: values[key] for key in COLUMNS if key not in ("created_at", "updated_at")
            }
            row["sku"] = f"IMP-{number:08d}"
            row["price"] = str(values["price"])
            row["attributes"] = json.loads(values["attributes"])
            file.write(json.dumps(row) + "\n")


def file_chunks(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(size):
            yield chunk


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 for one that is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU spent by the server process and by the bench database's backends during a step."""

    def __init__(self, url: str, server_pid: int) -> None:
        self.url, self.server_pid = url, server_pid
        self.server = self.database = 0.0

    def backends(self) -> dict[int, float]:
        async def pids() -> list[int]:
            connection = await asyncpg.connect(bootstrap.asyncpg_dsn(self.url))
            try:
                rows = await connection.fetch(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                return [row["pid"] for row in rows]
            finally:
                await connection.close()

        return {pid: cpu_seconds(pid) for pid in asyncio.run(pids())}

    def __enter__(self) -> CpuMeter:
        self.before = self.backends()
        self.server = -cpu_seconds(self.server_pid)
        return self

    def __exit__(self, *_: object) -> None:
        self.server += cpu_seconds(self.server_pid)
        after = self.backends()
        self.database = sum(cpu - self.before.get(pid, 0.0) for pid, cpu in after.items())

    def __str__(self) -> str:
        load = os.getloadavg()[0]
        return f"CPU: server {self.server:.2f} s, database {self.database:.2f} s; load {load:.2f}"


def timed_import(base: str, token: str, path: Path) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = httpx.post(
        f"{base}/products/import",
        content=file_chunks(path),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        timeout=STEP_TIMEOUT,
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"import answered {response.status_code}: {response.text[:500]}")
    return elapsed, response.json()


def timed_export(base: str, token: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    lines = size = 0
    with httpx.stream(
        "GET",
        f"{base}/products/export",
        headers={"Authorization": f"Bearer {token}"},
        timeout=STEP_TIMEOUT,
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    return time.perf_counter() - started, lines, size


def report_line(label: str, rows: int, seconds: float, detail: str) -> str:
    verdict = "ok" if seconds < TARGET_SECONDS else f"OVER the {TARGET_SECONDS:.0f} s target"
    return f"{label:<22}{seconds:>8.2f} s{rows / seconds:>12,.0f} rows/s   {detail}   [{verdict}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()

    name = f"catalog_bench_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="import_bench_"))
    process: subprocess.Popen[bytes] | None = None
    try:
        bootstrap.migrate(url)
        categories = asyncio.run(prepare_database(url))
        path = workdir / "products.ndjson"
        started = time.perf_counter()
        write_ndjson(path, args.rows, categories)
        print(
            f"wrote {args.rows:,} rows, {path.stat().st_size / 2**20:.1f} MiB of NDJSON "
            f"in {time.perf_counter() - started:.1f} s"
        )
        settings = Settings(_env_file=None, database_url=url, secret_key=SECRET)  # type: ignore[call-arg]
        token, _ = create_access_token(settings, user_id=1, role="editor")
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": url,
            "SECRET_KEY": SECRET,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "WORKERS": "1",
            "LOG_LEVEL": "WARNING",
        }
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "catalog"), "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/health")

        with CpuMeter(url, process.pid) as first_cpu:
            first_seconds, first = timed_import(base, token, path)
        assert (first["created"], first["failed"]) == (args.rows, 0), first
        with CpuMeter(url, process.pid) as again_cpu:
            again_seconds, again = timed_import(base, token, path)
        assert (again["unchanged"], again["updated"], again["failed"]) == (args.rows, 0, 0), again
        with CpuMeter(url, process.pid) as export_cpu:
            export_seconds, exported, size = timed_export(base, token)
        assert exported == args.rows, exported

        print(f"\none uvicorn worker, PostgreSQL on 127.0.0.1, {os.cpu_count()} CPUs\n")
        print(report_line("import (all new)", args.rows, first_seconds, "created all"))
        print(f"{'':<22}{first_cpu}")
        print(report_line("import again (same)", args.rows, again_seconds, "unchanged all"))
        print(f"{'':<22}{again_cpu}")
        print(
            f"{'export (NDJSON)':<22}{export_seconds:>8.2f} s"
            f"{exported / export_seconds:>12,.0f} rows/s   {size / 2**20:.1f} MiB"
        )
        print(f"{'':<22}{export_cpu}")
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for file in workdir.iterdir():
            file.unlink()
        workdir.rmdir()
        asyncio.run(bootstrap.drop_database(url))


if __name__ == "__main__":
    main()
