"""The real `catalog` console script, run as a user would run it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.db import bootstrap

CATALOG = str(Path(sys.executable).parent / "catalog")


def run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The command without SECRET_KEY: migrate, seed, import and create-user sign nothing."""
    inherited = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    return subprocess.run(
        [CATALOG, *args],
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def fetch(url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(bootstrap.asyncpg_dsn(url))
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_migrate_creates_the_database_and_schema(fresh_database_url: str) -> None:
    result = run("migrate", env={"DATABASE_URL": fresh_database_url})
    assert result.returncode == 0, result.stderr
    rows = asyncio.run(fetch(fresh_database_url, "SELECT version_num FROM alembic_version"))
    assert len(rows) == 1
    again = run("migrate", env={"DATABASE_URL": fresh_database_url})
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("where", ["missing database", "nothing listening"])
def test_a_database_it_cannot_use_is_one_clear_line(
    fresh_database_url: str, tmp_path: Path, where: str
) -> None:
    url = make_url(fresh_database_url).set(password="s3cret-pw")  # never created
    if where == "nothing listening":
        url = url.set(port=free_port())
    rows = tmp_path / "rows.ndjson"
    rows.write_text('{"sku": "A-1", "name": "A", "price": "1.00", "currency": "EUR"}\n')
    result = run(
        "import", str(rows), env={"DATABASE_URL": url.render_as_string(hide_password=False)}
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "Check DATABASE_URL" in line
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_seed_makes_varied_realistic_products(fresh_database_url: str) -> None:
    env = {"DATABASE_URL": fresh_database_url}
    result = run("seed", "--products", "300", env=env)  # creates and migrates the database
    assert result.returncode == 0, result.stderr
    assert "seeded 300 products" in result.stdout
    [stats] = asyncio.run(
        fetch(
            fresh_database_url,
            "SELECT count(*) AS n, count(DISTINCT name) AS names, count(DISTINCT price) AS prices,"
            " count(DISTINCT category_id) AS categories, count(DISTINCT currency) AS currencies,"
            " count(*) FILTER (WHERE cardinality(tags) > 0) AS tagged,"
            " count(*) FILTER (WHERE attributes ? 'color') AS coloured,"
            " min(length(description)) AS shortest FROM products",
        )
    )
    assert stats["n"] == 300
    assert stats["names"] > 200
    assert stats["prices"] > 200
    assert stats["categories"] > 10
    assert stats["currencies"] >= 2
    assert stats["tagged"] > 150
    assert stats["coloured"] == 300
    assert stats["shortest"] > 20
    [tree] = asyncio.run(
        fetch(
            fresh_database_url,
            "SELECT count(*) FILTER (WHERE parent_id IS NULL) AS roots,"
            " count(*) FILTER (WHERE parent_id IS NOT NULL) AS children FROM categories",
        )
    )
    assert tree["roots"] >= 3
    assert tree["children"] > tree["roots"]
    second = run("seed", "--products", "10", env=env)  # seeding again adds, never collides
    assert second.returncode == 0, second.stderr


@pytest.mark.slow
def test_dev_runner_falls_back_to_an_embedded_postgres(tmp_path: Path) -> None:
    """`make run` with no DATABASE_URL and nothing on the local port starts pgserver, under a
    data directory whose parent does not exist yet (a fresh clone has no .data/)."""
    port = free_port()
    dropped = {"DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR", "SECRET_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PORT"] = str(port)
    data_dir = tmp_path / "not-yet" / "pg"
    process = subprocess.Popen(
        [CATALOG, "dev", "--data-dir", str(data_dir), "--local-port", str(free_port())],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        body = b""
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.5)
        assert body == b'{"status":"ok"}'
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert "EMBEDDED PostgreSQL" in output
    assert process.returncode == 0, output
    assert (data_dir / "PG_VERSION").exists()
    assert not (data_dir / "postmaster.pid").exists(), "the embedded server was not stopped"
