"""The varied-traffic benchmark's figures and report: percentiles per family, the tables, and
the block it writes into docs/PERFORMANCE.md between START and END (bench/varied_bench.py)."""

from __future__ import annotations

import argparse
import os
import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

START = "<!-- varied-traffic:start -->"
END = "<!-- varied-traffic:end -->"
# The per-database settings docs/operations.md recommends ("PostgreSQL settings").
POSTGRES_SETTINGS: dict[str, str] = {
    "random_page_cost": "1.1",
    "effective_cache_size": "4GB",
    "work_mem": "16MB",
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
}
# Shown next to them: server-wide, not settable per database.
SERVER_SETTINGS = ("shared_buffers", "max_connections")
TARGET_P95_MS = 30.0
TARGET_MAX_MS = 100.0
FAMILIES = (
    "search",
    "search + sort",
    "search + filters",
    "filters",
    "filters + sort",
    "sort",
    "tags",
    "price range",
    "cursor",
)


@dataclass(frozen=True)
class Request:
    """A first page; `follow` more pages by its next_cursor (family "cursor")."""

    family: str
    params: tuple[tuple[str, str], ...]
    follow: int = 0

    def query(self) -> str:
        return urlencode(self.params)


@dataclass
class Timing:
    family: str
    query: str
    ms: float
    items: int


@dataclass
class Pass:
    timings: list[Timing] = field(default_factory=list)
    stopped_early: bool = False


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value at or above `share` of them."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


@dataclass
class Row:
    family: str
    count: int
    p50: float
    p95: float
    max: float

    @property
    def meets(self) -> bool:
        return self.p95 < TARGET_P95_MS and self.max < TARGET_MAX_MS


def summary(timings: list[Timing]) -> list[Row]:
    rows = []
    for family in ("overall", *FAMILIES):
        ms = [t.ms for t in timings if family in ("overall", t.family)]
        if ms:
            rows.append(Row(family, len(ms), statistics.median(ms), percentile(ms, 0.95), max(ms)))
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| family | requests | p50 ms | p95 ms | max ms | p95 < 30, max < 100 |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        verdict = "yes" if r.meets else "**no**"
        name = f"**{r.family}**" if r.family == "overall" else r.family
        lines.append(
            f"| {name} | {r.count} | {r.p50:.1f} | {r.p95:.1f} | {r.max:.1f} | {verdict} |"
        )
    return "\n".join(lines)


def slowest(timings: list[Timing], n: int = 10) -> str:
    lines = ["| ms | family | query string |", "|---:|---|---|"]
    for t in sorted(timings, key=lambda t: t.ms, reverse=True)[:n]:
        lines.append(f"| {t.ms:.1f} | {t.family} | `{t.query}` |")
    return "\n".join(lines)


def splice(document: str, block: str) -> str:
    """`document` with the text between START and END replaced by `block` (appended if absent)."""
    section = f"{START}\n{block.strip()}\n{END}"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: section, document, count=1)
    return document.rstrip("\n") + "\n\n" + section + "\n"


def meets(timings: list[Timing]) -> bool:
    return all(row.meets for row in summary(timings))


@dataclass
class Run:
    seed: int
    drawn: list[Request]
    measured: Pass
    loads: tuple[str, str]


def report(args: argparse.Namespace, shown: dict[str, str], runs: list[Run]) -> str:
    if args.no_settings:
        settings = "  - none: reset with `--no-settings`, to see what they pay"
    else:
        settings = "\n".join(f"  - `{k} = {v}`" for k, v in POSTGRES_SETTINGS.items())
    server = ", ".join(f"`{k}` {shown[k]}" for k in SERVER_SETTINGS)
    seeds = " ".join(f"--seed {run.seed}" for run in runs)
    verdicts = ", ".join(
        f"seed {run.seed} **{'met' if meets(run.measured.timings) else 'not met'}**" for run in runs
    )
    note = f"\n{args.note}\n" if args.note else ""
    sections = []
    for run in runs:
        stopped = " (stopped at --max-seconds)" if run.measured.stopped_early else ""
        sections.append(
            f"### Seed {run.seed}: {len(run.drawn)} first pages, "
            f"{len(run.measured.timings)} timed requests{stopped}, load average "
            f"{run.loads[0]} -> {run.loads[1]}\n\n{table(summary(run.measured.timings))}\n\n"
            f"Slowest requests:\n\n{slowest(run.measured.timings, 6)}\n"
        )
    body = "\n".join(sections)
    return f"""## Varied list traffic, one client (issue 11, point 7)

Written by `python -m bench.varied_bench --products {args.products} --requests {args.requests}
{seeds}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Target: p95 < {TARGET_P95_MS:g} ms and
max < {TARGET_MAX_MS:g} ms, overall and for every family: {verdicts}.
{note}
- Machine: {os.cpu_count()} cores ({machine()}), shared with other engineers' work: see the
  load averages.
- Catalog: {shown["products"]} products (`catalog seed`, seed 42; {shown["catalog size"]} with
  its indexes), PostgreSQL {shown["PostgreSQL"]}, VACUUM ANALYZE first. Server-wide settings
  as found: {server}.
- Per-database settings (`ALTER DATABASE ... SET`, docs/operations.md "PostgreSQL settings"):
{settings}
- Method: the service by `catalog serve --workers 1` as production runs it
  (ENVIRONMENT=production, JSON access lines at INFO to a file, a bearer token on every
  request); one client (httpx, keep-alive) on 127.0.0.1, one request at a time. For each
  seed, first pages drawn from the demo vocabulary of app/services/seed.py (one or two words
  of names and descriptions, 1-3 tags, a category with `in_stock` and `status`, price
  ranges, every sort, `limit` 20-100), about a third followed 1-4 pages by their
  `next_cursor` (family "cursor"). A warm pass, then the measured pass over the same
  requests; client-side wall time per request (send to body read).

{body}"""


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return f"{model}, {memory_kb / 1024 / 1024:.1f} GiB"
