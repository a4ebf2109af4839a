"""Medians, ratios to the ceiling, the targets of issue 11, and docs/PERFORMANCE.md with its chart.

Pure functions of the numbers measured, so tests/bench/test_ceiling.py checks them on given ones.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CEILING = "ceiling"
SERVICE = "service"
NO_FAST_PATH = "service, fast path off"
NAIVE = "naive ORM"
FRAMEWORK = "FastAPI alone"
TARGETS = (SERVICE, NO_FAST_PATH, NAIVE, FRAMEWORK, CEILING)


@dataclass(frozen=True, slots=True)
class Sample:
    """One wrk run against one target: throughput, latency, server CPU per request."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Summary:
    """The medians of a target's rounds on one endpoint, and how it compares to the ceiling."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    failed: int
    ratio: float | None  # req/s over the ceiling's
    p99_ratio: float | None  # p99 over the ceiling's


def summarise(samples: Sequence[Sample], ceiling: Sequence[Sample] | None) -> Summary:
    rps = statistics.median(s.rps for s in samples)
    p99 = statistics.median(s.p99_ms for s in samples)
    ratio = p99_ratio = None
    if ceiling:
        ratio = rps / statistics.median(s.rps for s in ceiling)
        p99_ratio = p99 / statistics.median(s.p99_ms for s in ceiling)
    return Summary(
        rps=rps,
        p50_ms=statistics.median(s.p50_ms for s in samples),
        p99_ms=p99,
        cpu_us=statistics.median(s.cpu_us for s in samples),
        failed=sum(s.failed for s in samples),
        ratio=ratio,
        p99_ratio=p99_ratio,
    )


Results = Mapping[str, Mapping[str, Sequence[Sample]]]  # endpoint -> target -> rounds


def summaries(results: Results) -> dict[str, dict[str, Summary]]:
    return {
        endpoint: {
            target: summarise(samples, by_target.get(CEILING))
            for target, samples in by_target.items()
        }
        for endpoint, by_target in results.items()
    }


@dataclass(frozen=True, slots=True)
class Target:
    text: str
    figure: str
    met: bool


def targets(
    table: Mapping[str, Mapping[str, Summary]], by_id: str, page: str, deep: str
) -> list[Target]:
    """Issue 11's targets, on the service with everything on."""
    service = {endpoint: row[SERVICE] for endpoint, row in table.items() if SERVICE in row}
    one, first, deep_page = service[by_id], service[page], service[deep]
    worst = max(
        (endpoint for endpoint, s in service.items() if s.p99_ratio is not None),
        key=lambda endpoint: service[endpoint].p99_ratio or 0.0,
    )
    worst_p99 = service[worst].p99_ratio or 0.0
    deep_share = deep_page.rps / first.rps
    return [
        Target("GET by id >= 0.40 of the ceiling", f"{one.ratio:.2f}", (one.ratio or 0) >= 0.40),
        Target(
            "first page >= 0.50 of the ceiling", f"{first.ratio:.2f}", (first.ratio or 0) >= 0.50
        ),
        Target(
            "p99 <= 2x the ceiling's, on every endpoint",
            f"worst {worst_p99:.2f}x ({worst})",
            worst_p99 <= 2.0,
        ),
        Target(
            "deep keyset page within 20% of page 1 (req/s)",
            f"{deep_share:.2f} of page 1",
            deep_share >= 0.80,
        ),
    ]


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table_markdown(table: Mapping[str, Mapping[str, Summary]]) -> str:
    lines = [
        "| endpoint | app | req/s | ratio | p50 ms | p99 ms | p99 / ceiling's "
        "| server CPU us/req | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for endpoint, row in table.items():
        for target in TARGETS:
            if target not in row:
                continue
            s = row[target]
            lines.append(
                f"| {endpoint} | {target} | {s.rps:,.0f} | {_cell(s.ratio, '.2f')} | "
                f"{s.p50_ms:.1f} | {s.p99_ms:.1f} | {_cell(s.p99_ratio, '.2f')} | "
                f"{s.cpu_us:,.0f} | {s.failed} |"
            )
    return "\n".join(lines)


def targets_markdown(checks: Sequence[Target]) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {c.text} | {c.figure} | {'met' if c.met else 'NOT met'} |" for c in checks]
    return "\n".join(lines)


def chart(table: Mapping[str, Mapping[str, Summary]], path: Path, title: str) -> None:
    """Grouped bars: each app's req/s over the ceiling's, per endpoint; the ceiling is 1.0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    endpoints = list(table)
    apps = [t for t in TARGETS if t != CEILING and any(t in row for row in table.values())]
    width = 0.8 / len(apps)
    figure, axes = plt.subplots(figsize=(11, 5.5), dpi=110)
    for index, app in enumerate(apps):
        xs = [i + (index - (len(apps) - 1) / 2) * width for i in range(len(endpoints))]
        ratios = [(table[e][app].ratio or 0.0) if app in table[e] else 0.0 for e in endpoints]
        bars = axes.bar(xs, ratios, width, label=app)
        for x, ratio, endpoint in zip(xs, ratios, endpoints, strict=True):
            if app in table[endpoint]:
                axes.text(x, ratio + 0.01, f"{ratio:.2f}", ha="center", va="bottom", fontsize=7)
        del bars
    axes.axhline(1.0, color="black", linewidth=1, label="ceiling (raw ASGI + asyncpg)")
    axes.axhline(0.40, color="grey", linestyle=":", linewidth=1, label="target by id (0.40)")
    axes.axhline(0.50, color="grey", linestyle="--", linewidth=1, label="target first page (0.50)")
    axes.set_xticks(range(len(endpoints)), endpoints, rotation=20, ha="right")
    axes.set_ylabel("req/s / ceiling's req/s")
    axes.set_ylim(0, 1.1)
    axes.set_title(title)
    axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
