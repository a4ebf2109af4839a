"""The service as users run it, against the ceiling of its stack: writes docs/PERFORMANCE.md.

    .venv/bin/python -m bench.read_bench [--products 100000] [--duration 5] [--rounds 3]

Needs `wrk` (Debian package wrk) and PostgreSQL on 127.0.0.1:5432. It creates a throwaway
database, fills it with `catalog seed`, and serves five apps side by side, one process each on
127.0.0.1: the service by `catalog serve` as production runs it (ENVIRONMENT=production, a
random strong SECRET_KEY, JSON access lines at INFO on stderr, which goes to a file, metrics,
a bearer token on every request); the same with its fast path off
(bench/service_factory.py); the ceiling (bench/ceiling_app.py); and the naive AsyncSession ORM
app (bench/naive_app.py, reads only); FastAPI alone on the ceiling's work
(bench/framework_floor_app.py, reads only). Each endpoint is loaded with wrk -t2 -c64 --latency, a
warm-up first, then ROUNDS interleaved rounds (the order of the apps rotates each round); the
report gives medians, and the server process's CPU time per request from /proc/<pid>/stat.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from app.core.config import Settings
from app.core.security import create_access_token
from app.db import bootstrap
from bench import report, varied_bench, wrk
from bench.report import CEILING, FRAMEWORK, NAIVE, NO_FAST_PATH, SERVICE, Sample
from bench.support import add_user, free_port, production_env, wait_until_up

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEEP_PAGES = 40
FILTER_CATEGORY = "Audio"  # a leaf of the demo tree
SEARCH_WORD = "titanium"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    label: str
    process: subprocess.Popen[bytes]
    base: str


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine(dsn: str) -> dict[str, str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )

    async def server_version() -> str:
        connection = await asyncpg.connect(dsn)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    return {
        "nproc": str(os.cpu_count()),
        "CPU": model,
        "memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "PostgreSQL": asyncio.run(server_version()),
        "Python": platform.python_version(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        .stdout.split("[")[0]
        .strip()
        or "wrk",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


async def _prepare(url: str) -> tuple[int, int, tuple[int, int]]:
    """The benchmark's editor (its id), the filter's category, the range of category ids."""
    await add_user(url, "bench-editor@example.com", "editor")
    connection = await asyncpg.connect(bootstrap.asyncpg_dsn(url))
    try:
        user_id = await connection.fetchval(
            "SELECT id FROM users WHERE email = 'bench-editor@example.com'"
        )
        category = await connection.fetchval(
            "SELECT id FROM categories WHERE name = $1", FILTER_CATEGORY
        )
        bounds = await connection.fetchrow("SELECT min(id), max(id) FROM categories")
        assert bounds is not None
        low, high = bounds
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return user_id, category, (low, high)


async def _versions(dsn: str, ids: list[int]) -> list[tuple[int, int]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT id, version FROM products WHERE id = ANY($1::bigint[])", ids
        )
    finally:
        await connection.close()
    versions = {row["id"]: row["version"] for row in rows}
    return [(i, versions[i]) for i in ids]


def deep_cursor(base: str, headers: dict[str, str]) -> str:
    """The cursor DEEP_PAGES pages into the default order, as a client paging would hold it."""
    cursor = None
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        for _ in range(DEEP_PAGES):
            params: dict[str, str] = {"cursor": cursor} if cursor else {}
            response = client.get("/products", params=params)
            response.raise_for_status()
            cursor = response.json()["next_cursor"]
    assert cursor is not None
    return str(cursor)


@contextmanager
def servers(env: dict[str, str], logs: Path) -> Iterator[list[Server]]:
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--no-access-log"]
    commands = {
        SERVICE: [str(BIN / "catalog"), "serve", "--host", "127.0.0.1", "--workers", "1"],
        NO_FAST_PATH: [sys.executable, "-m", "bench.service_factory"],
        CEILING: [*uvicorn, "--log-level", "warning", "--factory", "bench.ceiling_app:from_env"],
        NAIVE: [*uvicorn, "--log-level", "warning", "bench.naive_app:app"],
        FRAMEWORK: [
            *uvicorn,
            "--log-level",
            "warning",
            "--factory",
            "bench.framework_floor_app:create",
        ],
    }
    started: list[Server] = []
    try:
        for label, command in commands.items():
            port = free_port()
            if command[0] == sys.executable and "uvicorn" in command:
                command = [*command, "--port", str(port)]
            stderr = (logs / f"{label.replace(' ', '_').replace(',', '')}.log").open("wb")
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**env, "PORT": str(port), "HOST": "127.0.0.1"},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            started.append(Server(label, process, f"http://127.0.0.1:{port}"))
        yield started
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.terminate()
        for server in started:
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()


@dataclass
class Endpoint:
    name: str
    path: str
    script: Callable[[], str] | None  # Lua text, made right before each run
    apps: tuple[str, ...]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--note", default="", help="a sentence for the report (machine load)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "performance.png")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    name = f"catalog_bench_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    dsn = bootstrap.asyncpg_dsn(url)
    secret = secrets.token_urlsafe(48)
    env = {
        **production_env(url, secret),
        "BENCH_URL": url,
        "BENCH_DSN": dsn,
    }
    started_at = time.monotonic()
    try:
        subprocess.run(
            [str(BIN / "catalog"), "seed", "--products", str(args.products)],
            cwd=ROOT,
            env=env,
            check=True,
        )
        user_id, category, categories = asyncio.run(_prepare(url))
        env["BENCH_USER_ID"] = str(user_id)
        # A token that outlives the run (the servers keep the default lifetime of 15 minutes).
        settings = Settings(
            _env_file=None,
            database_url=url,
            secret_key=secret,
            access_token_ttl_seconds=86_400,
        )
        token, _ = create_access_token(settings, user_id=user_id, role="editor")
        headers = {"Authorization": f"Bearer {token}"}
        header = f"Authorization: Bearer {token}"
        facts = machine(dsn)
        rng = random.Random(args.seed)
        patch_ids = rng.sample(range(1, args.products + 1), min(20_000, args.products) // 2 * 2)
        prefix = f"B{uuid.uuid4().hex[:6]}"
        runs = 0

        def create() -> str:
            nonlocal runs
            runs += 1  # each run its own SKUs
            return wrk.create_script(args.seed, f"{prefix}{runs}", categories)

        endpoints = [
            Endpoint(
                "GET by id",
                "/",
                lambda: wrk.by_id_script(args.seed, args.products),
                report.TARGETS,
            ),
            Endpoint("first page", "/products", None, report.TARGETS),
            Endpoint(
                "filtered, sorted",
                f"/products?category_id={category}&in_stock=true&status=active&sort=-price",
                None,
                (SERVICE, NO_FAST_PATH, CEILING),
            ),
            Endpoint(
                f"search q={SEARCH_WORD}",
                f"/products?q={SEARCH_WORD}",
                None,
                (SERVICE, NO_FAST_PATH, CEILING),
            ),
            Endpoint(f"page {DEEP_PAGES + 1}", "", None, (SERVICE, NO_FAST_PATH, CEILING)),
            Endpoint("POST /products", "/", create, (SERVICE, CEILING)),
            Endpoint(
                "PATCH If-Match",
                "/",
                lambda: wrk.update_script(args.seed, asyncio.run(_versions(dsn, patch_ids))),
                (SERVICE, CEILING),
            ),
            Endpoint(
                "stock change",
                "/",
                lambda: wrk.stock_script(args.seed, args.products),
                (SERVICE, CEILING),
            ),
        ]
        results: dict[str, dict[str, list[Sample]]] = {e.name: {} for e in endpoints}
        with tempfile.TemporaryDirectory(prefix="catalog-bench-") as scratch:
            logs = Path(scratch)
            with servers(env, logs) as running:
                by_label = {server.label: server for server in running}
                for server in running:
                    wait_until_up(f"{server.base}/products/1", headers, timeout=60)
                cursor = deep_cursor(by_label[SERVICE].base, headers)
                endpoints[4].path = f"/products?cursor={cursor}"
                script_path = logs / "request.lua"

                def load(endpoint: Endpoint, server: Server, duration: int) -> Sample:
                    script = None
                    if endpoint.script is not None:
                        script_path.write_text(endpoint.script())
                        script = script_path
                    before = cpu_seconds(server.process.pid)
                    result = wrk.run(
                        server.base + endpoint.path,
                        header=header,
                        duration=duration,
                        connections=args.connections,
                        script=script,
                    )
                    cpu = cpu_seconds(server.process.pid) - before
                    return Sample(
                        rps=result.rps,
                        p50_ms=result.p50_ms,
                        p99_ms=result.p99_ms,
                        cpu_us=cpu / max(result.requests, 1) * 1e6,
                        failed=result.failed,
                    )

                for server in running:  # warm-up: every read endpoint once per app
                    for endpoint in endpoints[:5]:
                        if server.label in endpoint.apps:
                            load(endpoint, server, args.warmup)
                for round_number in range(args.rounds):
                    for endpoint in endpoints:
                        apps = list(endpoint.apps)
                        shift = round_number % len(apps)
                        for label in apps[shift:] + apps[:shift]:
                            sample = load(endpoint, by_label[label], args.duration)
                            results[endpoint.name].setdefault(label, []).append(sample)
                            print(
                                f"round {round_number + 1} {endpoint.name:<18} {label:<24}"
                                f"{sample.rps:>9,.0f} r/s  p99 {sample.p99_ms:>7.1f} ms  "
                                f"{sample.cpu_us:>6.0f} us/req  failed {sample.failed}",
                                flush=True,
                            )
                service_log = logs / "service.log"
                access_lines = sum(1 for _ in service_log.open("rb"))
        facts["load average at end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        table = report.summaries(results)
        checks = report.targets(table, "GET by id", "first page", f"page {DEEP_PAGES + 1}")
        args.chart.parent.mkdir(parents=True, exist_ok=True)
        report.chart(
            table,
            args.chart,
            f"req/s relative to the ceiling: {args.products:,} products, wrk -t2 "
            f"-c{args.connections}, median of {args.rounds} rounds",
        )
        written = document(args, facts, table, checks, access_lines, time.monotonic() - started_at)
        args.output.write_text(keep_varied_traffic(args.output, written))
        print()
        print(report.table_markdown(table))
        print()
        print(report.targets_markdown(checks))
    finally:
        asyncio.run(bootstrap.drop_database(url))


def keep_varied_traffic(path: Path, written: str) -> str:
    """`written` with the varied-traffic block (bench/varied_bench.py) the file already holds."""
    old = path.read_text() if path.exists() else ""
    start, end = old.find(varied_bench.START), old.find(varied_bench.END)
    if start < 0 or end < start:
        return written
    block = old[start + len(varied_bench.START) : end]
    return varied_bench.splice(written, block)


def document(
    args: argparse.Namespace,
    facts: dict[str, str],
    table: dict[str, dict[str, report.Summary]],
    checks: list[report.Target],
    access_lines: int,
    seconds: float,
) -> str:
    machine_lines = "\n".join(f"- {key}: {value}" for key, value in facts.items())
    note = f"\n{args.note}\n" if args.note else ""
    return f"""# Performance

Written by `make bench` (`python -m bench.read_bench --products {args.products} --duration
{args.duration:g} --rounds {args.rounds}`); this run took {seconds / 60:.0f} minutes. Figures
from one machine only mean something as ratios to the ceiling measured beside them.

## Machine

{machine_lines}
{note}
## Method

- Data: a throwaway database filled by `catalog seed --products {args.products}` (seed 42),
  then `VACUUM ANALYZE`.
- **service**: `catalog serve --workers 1` on 127.0.0.1 as production runs it:
  `ENVIRONMENT=production`, a random 64-character `SECRET_KEY`, `REDIS_URL` set, JSON access
  lines at INFO on stderr (redirected to a file, so every line is written: {access_lines:,}
  lines in this run), `/metrics` instrumentation on, and a bearer token (an editor's) on every
  request, checked as always.
- **service, fast path off**: the same settings, `create_app(settings, fast_path=False)`
  (bench/service_factory.py) served with the same uvicorn options: FastAPI solves every
  route's dependencies, also where `app/api/plain_dependencies.py` would call them directly.
- **ceiling** (bench/ceiling_app.py): raw ASGI under the same uvicorn, no framework, no auth,
  an asyncpg pool of the same size (20) created with a no-op `reset` (asyncpg 0.32's
  `create_pool(reset=...)`, so a release costs no `RESET ALL` round trip), every query
  prepared once per connection (asyncpg's statement cache), the JSON built by orjson in Python
  from plain columns; equivalent raw SQL for the writes (the stock change writes its ledger row
  in the same statement, as the service does). tests/bench/test_ceiling.py checks it answers
  the same JSON as the service for by-id and the first page over the same rows.
- **naive ORM** (bench/naive_app.py): FastAPI, `AsyncSession.get` / `select(Product)` and a
  pydantic response model; by id and the first page only.
- **FastAPI alone** (bench/framework_floor_app.py): the ceiling's pool, queries and orjson rows
  behind two plain FastAPI routes, no middleware, no auth, no metrics, no access line; by id
  and the first page only. What it loses to the ceiling is the framework's own cost, which no
  service on FastAPI avoids.
- Load: `wrk -t2 -c{args.connections} -d{args.duration:g}s --latency`; each app warms up on every
  read endpoint ({args.warmup:g} s each) first; then {args.rounds} rounds, each endpoint in turn
  against every app, the order of the apps rotating per round; the medians of the rounds.
  Requests are drawn at random with a fixed seed (Lua): ids for by id and the stock change
  (delta 1-5), realistic bodies from the demo vocabulary for POST (a new SKU each), and for
  PATCH (a new name and price) a fixed set of 20,000 products walked in turn with `If-Match`
  naming each one's current version.
- Endpoints: by id; the first page (`GET /products`); a filtered, sorted page (a leaf category
  with `in_stock=true&status=active&sort=-price`); a ranked search (`q={SEARCH_WORD}`); page
  {DEEP_PAGES + 1} of the default order (a cursor taken from the API after {DEEP_PAGES} pages);
  the writes.
- Server CPU per request: the server process's utime + stime (`/proc/<pid>/stat`) over the run,
  divided by the requests wrk completed; PostgreSQL's own CPU is not in it.
- ratio = the app's median req/s over the ceiling's; p99 / ceiling's likewise.
- failed: responses that were not 2xx/3xx plus wrk's socket errors (timeouts over 10 s),
  summed over the rounds; a 503 after a 2 s wait for a pooled connection counts here.

## What the read path does

- Plain routes (both reads here) are answered without FastAPI's dependency solving, through
  FastAPI's own routing (`app/api/plain_dependencies.py`): the row "fast path off" is the
  same service with FastAPI solving them.
- PostgreSQL renders each product's JSON; the reads borrow a pooled connection of the one
  engine and use asyncpg directly (`app/db/session.py`), no ORM.
- One edge middleware (request id, security headers, in-progress gauge, access line) instead
  of one layer per concern; the JSON access line is written straight to stderr, not through a
  logging handler; the request context is one context variable, not structlog's per-key ones.
- `gc.freeze()` after startup, so a full collection does not walk what startup built.
- What is left between the service and the ceiling, from py-spy on a by-id read under load:
  FastAPI's routing and exception layers and `request_response` (about an eighth of the
  service's CPU), the instrumentator's middleware (about a tenth), FastAPI's parameter parsing,
  SQLAlchemy's pool checkout through a greenlet (`python -m bench.lend_bench` times a lend
  of it against asyncpg's pool and a plain queue); the writes go through the ORM (BEGIN, the
  statement and COMMIT are three round trips where the ceiling sends one).

## Results

{report.table_markdown(table)}

![req/s relative to the ceiling](performance.png)

## Issue 11's targets (service, everything on)

{report.targets_markdown(checks)}
"""


if __name__ == "__main__":
    main()
