"""Varied list traffic from one client: p50/p95/max overall and per family (issue 11, point 7).

    .venv/bin/python -m bench.varied_bench [--products 1000000] [--requests 400] [--seed 7 ...]
        [--database-url URL] [--keep-database] [--output docs/PERFORMANCE.md | --no-report]
        [--note TEXT] [--no-settings]

Without --database-url it creates a throwaway database on 127.0.0.1:5432 and fills it with
`catalog seed --products N` (a million products take a few minutes); with it, that catalog is
used as it is (not seeded; give one `catalog seed` filled). Either way it applies
POSTGRES_SETTINGS to the database (`ALTER DATABASE ... SET`, what docs/operations.md
recommends), runs VACUUM ANALYZE, and serves the service as production does (`catalog serve
--workers 1`, ENVIRONMENT=production, a random SECRET_KEY, JSON access lines at INFO to a
file, a bearer token on every request). One client then sends requests drawn at random with a
fixed seed from the demo vocabulary (app/services/seed.py), each family in FAMILIES, and
follows next_cursor a few pages deep: a warm pass, then the measured pass over the same
requests. The throwaway database is dropped at the end unless --keep-database.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import asyncpg
import httpx

from app.core.config import Settings
from app.core.security import create_access_token
from app.db import bootstrap
from app.services import seed
from bench.support import add_user, free_port, production_env, wait_until_up

# START, END and splice are used from here by bench/read_bench.py, which keeps the block.
from bench.varied_report import END as END
from bench.varied_report import (
    FAMILIES,
    POSTGRES_SETTINGS,
    SERVER_SETTINGS,
    Pass,
    Request,
    Run,
    Timing,
    report,
    slowest,
    splice,
    summary,
    table,
)
from bench.varied_report import START as START

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SORTS = ("id", "-id", "created_at", "-created_at", "price", "-price", "name", "-name")
STATUSES = ("active", "draft", "archived")
PRICE_STEPS = ("1", "5", "10", "20", "35", "50", "100", "250", "500", "1000", "5000")


def vocabulary() -> list[str]:
    """The words demo products are made of (names, descriptions, colours), lower case."""
    words: set[str] = set()
    for group in (seed.BRANDS, seed.ADJECTIVES, seed.MATERIALS, seed.COLORS):
        words.update(w.lower() for w in group)
    for nouns in seed.NOUNS.values():
        words.update(n.lower() for n in nouns)
    words.update(c.lower() for c in seed.NOUNS)
    return sorted(words)


def requests(rng_seed: int, count: int, categories: list[int]) -> list[Request]:
    """`count` first pages drawn from FAMILIES (but cursor) in turn, values at random.

    About one in three is followed 1-4 pages deep by its next_cursor, so "cursor" pages sit
    a few pages into every kind of list.
    """
    rng = random.Random(rng_seed)
    words = vocabulary()
    kinds = [f for f in FAMILIES if f != "cursor"]
    drawn: list[Request] = []
    sorts: dict[str, list[str]] = {}

    def sort(family: str) -> tuple[str, str]:
        # Each family goes through every sort (shuffled), so a short run has them all.
        left = sorts.setdefault(family, [])
        if not left:
            left.extend(rng.sample(SORTS, len(SORTS)))
        return ("sort", left.pop())

    def filters() -> list[tuple[str, str]]:
        chosen = [("category_id", str(rng.choice(categories)))]
        if rng.random() < 0.8:
            chosen.append(("in_stock", rng.choice(("true", "false"))))
        if rng.random() < 0.8:
            chosen.append(("status", rng.choices(STATUSES, weights=(6, 3, 2))[0]))
        return chosen

    def query() -> tuple[str, str]:
        picked = rng.sample(words, rng.choice((1, 1, 1, 2)))
        return ("q", " ".join(picked))

    for number in range(count):
        family = kinds[number % len(kinds)]
        params: list[tuple[str, str]] = []
        if family.startswith("search"):
            params.append(query())
        if family in ("search + filters", "filters", "filters + sort"):
            params += filters()
        if family == "tags":
            params += [("tag", t) for t in rng.sample(seed.TAGS, rng.randint(1, 3))]
        if family == "price range":
            low, high = sorted(rng.sample(range(len(PRICE_STEPS)), 2))
            shape = rng.choice(("both", "both", "min", "max"))
            if shape != "max":
                params.append(("min_price", PRICE_STEPS[low]))
            if shape != "min":
                params.append(("max_price", PRICE_STEPS[high]))
        sorted_family = family in ("search + sort", "filters + sort", "sort")
        if sorted_family or (family in ("tags", "price range") and rng.random() < 0.7):
            params.append(sort(family))
        params.append(("limit", str(rng.randint(20, 100))))
        follow = rng.randint(1, 4) if rng.random() < 0.35 else 0
        drawn.append(Request(family, tuple(params), follow))
    return drawn


def run_pass(client: httpx.Client, drawn: list[Request], deadline: float) -> Pass:
    """Each request, then its follow-ups with the cursors the answers give."""
    result = Pass()
    for request in drawn:
        if time.monotonic() > deadline:
            result.stopped_early = True
            break
        query = request.query()
        cursor: str | None = None
        for page in range(request.follow + 1):
            path = f"/products?{query}" + (f"&{urlencode({'cursor': cursor})}" if cursor else "")
            started = time.perf_counter()
            response = client.get(path)
            ms = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            body = response.json()
            family = "cursor" if page else request.family
            shown = query + (f" +cursor (page {page + 1})" if page else "")
            result.timings.append(Timing(family, shown, ms, len(body["items"])))
            cursor = body["next_cursor"]
            if cursor is None:
                break
    return result


async def prepare(
    url: str, database: str, apply: bool = True
) -> tuple[int, list[int], dict[str, str]]:
    """Apply POSTGRES_SETTINGS (or reset them), VACUUM ANALYZE; the editor's id, the
    category ids, and the settings in force."""
    await add_user(url, f"varied-{uuid.uuid4().hex[:8]}@example.com", "editor")
    dsn = bootstrap.asyncpg_dsn(url)
    connection = await asyncpg.connect(dsn)
    try:
        for name, value in POSTGRES_SETTINGS.items():
            change = f"SET {name} = '{value}'" if apply else f"RESET {name}"
            await connection.execute(f'ALTER DATABASE "{database}" {change}')
        user_id = await connection.fetchval(
            "SELECT id FROM users WHERE role = 'editor' ORDER BY id DESC LIMIT 1"
        )
        categories = [r[0] for r in await connection.fetch("SELECT id FROM categories ORDER BY id")]
        await connection.execute("VACUUM ANALYZE", timeout=3600)
    finally:
        await connection.close()
    connection = await asyncpg.connect(dsn)  # a new session sees the database's settings
    try:
        shown = {
            name: str(await connection.fetchval(f"SHOW {name}"))
            for name in (*POSTGRES_SETTINGS, *SERVER_SETTINGS)
        }
        shown["products"] = f"{await connection.fetchval('SELECT count(*) FROM products'):,}"
        shown["catalog size"] = str(
            await connection.fetchval("SELECT pg_size_pretty(pg_total_relation_size('products'))")
        )
        shown["PostgreSQL"] = str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()
    return user_id, categories, shown


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextmanager
def service(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [str(BIN / "catalog"), "serve", "--host", "127.0.0.1", "--workers", "1"],
            cwd=ROOT,
            env={**env, "PORT": str(port), "HOST": "127.0.0.1"},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        except BaseException:
            tail = log.read_bytes()[-3000:].decode(errors="replace")
            print(f"the service's log ends with:\n{tail}", file=sys.stderr)
            raise
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=400, help="first pages per seed")
    parser.add_argument("--seed", type=int, action="append", help="repeat for several (7)")
    parser.add_argument("--database-url", help="a seeded catalog to use as it is")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--max-seconds", type=float, default=600, help="per pass")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    parser.add_argument("--no-report", action="store_true", help="print only")
    parser.add_argument("--note", default="", help="a sentence for the report (the server)")
    parser.add_argument(
        "--no-settings",
        action="store_true",
        help="reset the per-database settings instead (to see what they pay)",
    )
    args = parser.parse_args()
    args.seed = args.seed or [7]

    url = args.database_url
    throwaway = url is None
    if url is None:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/catalog_varied_{uuid.uuid4().hex[:8]}"
    database = url.rsplit("/", 1)[1].split("?")[0]
    secret = secrets.token_urlsafe(48)
    env = production_env(url, secret)
    try:
        if throwaway:
            command = [str(BIN / "catalog"), "seed", "--products", str(args.products)]
            subprocess.run(command, cwd=ROOT, env=env, check=True)
        user_id, categories, shown = asyncio.run(prepare(url, database, not args.no_settings))
        print("settings:", ", ".join(f"{k}={v}" for k, v in shown.items()), flush=True)
        settings = Settings(
            _env_file=None, database_url=url, secret_key=secret, access_token_ttl_seconds=86_400
        )
        token, _ = create_access_token(settings, user_id=user_id, role="editor")
        headers = {"Authorization": f"Bearer {token}"}
        runs: list[Run] = []
        with tempfile.TemporaryDirectory(prefix="catalog-varied-") as scratch:
            with service(env, Path(scratch) / "service.log") as base:
                wait_until_up(f"{base}/products?limit=1", headers, timeout=60)
                with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                    for seed in args.seed:
                        drawn = requests(seed, args.requests, categories)
                        run_pass(client, drawn, time.monotonic() + args.max_seconds)
                        before = load_average()
                        measured = run_pass(client, drawn, time.monotonic() + args.max_seconds)
                        runs.append(Run(seed, drawn, measured, (before, load_average())))
                        print(f"seed {seed}, load average {runs[-1].loads}")
                        print(table(summary(measured.timings)))
                        print(slowest(measured.timings), flush=True)
        if not args.no_report:
            text = args.output.read_text() if args.output.exists() else "# Performance\n"
            args.output.write_text(splice(text, report(args, shown, runs)))
            print(f"wrote the varied-traffic block of {args.output}")
    finally:
        if throwaway and not args.keep_database:
            asyncio.run(bootstrap.drop_database(url))
        elif throwaway:
            print(f"kept {url}")


if __name__ == "__main__":
    main()
