"""Hot-read throughput of the service against a bare asyncpg app and the naive ORM path.

    .venv/bin/python -m bench.read_bench [--products 10000] [--duration 10] [--connections 32]

Needs `wrk` (Debian package wrk) and PostgreSQL on 127.0.0.1:5432. It creates a throwaway
database, seeds it, serves each app in turn with one uvicorn worker on 127.0.0.1, loads it
with wrk for a bounded time, prints requests/s and the ratio to the bare app, and drops the
database. Figures from one run on one machine only mean something as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from app.core.config import Settings
from app.core.security import create_access_token
from app.db import bootstrap
from app.services.seed import seed_catalog
from bench.support import add_user, free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-key-0123456789-abcdefghijkl"


def run_wrk(url: str, script: Path | None, header: str, duration: int, connections: int) -> float:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-H", header]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=duration + 30
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed responses from {url}:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


def serve(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    name = f"catalog_bench_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    bootstrap.migrate(url)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        asyncio.run(seed_catalog(url, args.products))
        asyncio.run(add_user(url, "bench@example.com", "viewer"))
        settings = Settings(_env_file=None, database_url=url, secret_key=SECRET)  # type: ignore[call-arg]
        token, _ = create_access_token(settings, user_id=1, role="viewer")
        header = f"Authorization: Bearer {token}"
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
            lua.write(
                f"request = function() return wrk.format('GET', '/products/' .. "
                f"math.random(1, {args.products})) end\n"
            )
        script = Path(lua.name)
        base_env = {**os.environ, "PYTHONPATH": str(ROOT)}
        apps = {
            "bare asyncpg": [sys.executable, "-m", "uvicorn", "bench.bare_app:app"],
            "service": [str(Path(sys.executable).parent / "catalog"), "serve"],
            "naive ORM": [sys.executable, "-m", "uvicorn", "bench.naive_app:app"],
        }
        results: dict[str, tuple[float, float]] = {}
        for label, command in apps.items():
            port = free_port()
            env = {
                **base_env,
                "DATABASE_URL": url,
                "BENCH_URL": url,
                "BENCH_DSN": url.replace("+asyncpg", ""),
                "SECRET_KEY": SECRET,
                "PORT": str(port),
                "LOG_LEVEL": "WARNING",
            }
            extra = [] if label == "service" else ["--port", str(port), "--log-level", "warning"]
            process = serve(command + extra, env)
            processes.append(process)
            base = f"http://127.0.0.1:{port}"
            wait_until_up(f"{base}/products/1", {"Authorization": f"Bearer {token}"})
            run_wrk(f"{base}/products/1", None, header, 2, args.connections)  # warm-up
            one = run_wrk(base, script, header, args.duration, args.connections)
            page = run_wrk(f"{base}/products", None, header, args.duration, args.connections)
            results[label] = (one, page)
            process.terminate()
            process.wait(timeout=30)
        bare_one, bare_page = results["bare asyncpg"]
        print(
            f"\n{args.products} products, {args.connections} connections, "
            f"{args.duration}s per run, one worker each\n"
        )
        print(f"{'app':<14}{'GET /products/{id}':>22}{'ratio':>8}{'GET /products':>18}{'ratio':>8}")
        for label, (one, page) in results.items():
            print(
                f"{label:<14}{one:>18.0f} r/s{one / bare_one:>8.2f}"
                f"{page:>14.0f} r/s{page / bare_page:>8.2f}"
            )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        asyncio.run(bootstrap.drop_database(url))


if __name__ == "__main__":
    main()
