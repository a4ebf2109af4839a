"""GET /metrics: route templates as labels, pool gauges, business counters, valid exposition,
and one scrape that sums every worker of `catalog serve --workers 2`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy.ext.asyncio import AsyncConnection

from app.api.metrics import read_pool
from app.cli import _metrics_dir
from app.core.config import Settings
from app.db.engine import build_engine
from tests.conftest import make_settings
from tests.factories import product_data
from tests.ops.locks import product_row_lock
from tests.ops.server import running_server

POOL_GAUGES = (
    "catalog_db_pool_size",
    "catalog_db_pool_max_overflow",
    "catalog_db_pool_connections",
    "catalog_db_pool_checked_out",
    "catalog_db_pool_overflow",
    "catalog_db_pool_waiters",
)
BUSINESS_COUNTERS = {
    "catalog_db_errors": "kind",
    "catalog_products_created": None,
    "catalog_stock_adjustments": "outcome",
    "catalog_import_rows": "outcome",
    "catalog_login_failures": "reason",
}
POLL_TIMEOUT = 20.0
READY = "/health/ready"


def samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(
        sample.value
        for sample in samples(text)
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def handlers(text: str) -> set[str]:
    return {
        sample.labels["handler"]
        for sample in samples(text)
        if sample.name.startswith(("http_requests_total", "http_request_duration_seconds"))
    }


def handlers_counted(before: str, after: str) -> set[str]:
    """The handlers whose request count grew between two scrapes. The registry is the
    process's: other tests' apps, with routes of their own, count into it too."""
    return {
        handler
        for handler in handlers(after)
        if value(after, "http_requests_total", handler=handler)
        > value(before, "http_requests_total", handler=handler)
    }


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def route_templates(app: object) -> set[str]:
    paths = set(app.openapi()["paths"])  # type: ignore[attr-defined]
    # Routes kept out of the schema: the docs pages and their assets.
    return paths | {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/docs-assets"}


class TestRequestMetrics:
    async def test_ids_collapse_into_the_route_template(
        self, viewer: httpx.AsyncClient, app: object
    ) -> None:
        before = await scrape(viewer)
        for product_id in (123, 456):
            assert (await viewer.get(f"/products/{product_id}")).status_code == 404
        after = await scrape(viewer)

        template = {"handler": "/products/{product_id}", "method": "GET", "status": "404"}
        assert value(after, "http_requests_total", **template) - value(
            before, "http_requests_total", **template
        ) == pytest.approx(2)
        assert all("123" not in h and "456" not in h for h in handlers(after))
        assert handlers_counted(before, after) <= route_templates(app) | {"<unmatched>"}

    async def test_unknown_paths_share_one_label(
        self, viewer: httpx.AsyncClient, app: object
    ) -> None:
        before = await scrape(viewer)
        paths = ["/no/such/route/1", "/no/such/route/2", "/products/123/", "/products/456/"]
        for path in paths:
            assert (await viewer.get(path)).status_code in (404, 307)
        after = await scrape(viewer)

        unmatched = value(after, "http_requests_total", handler="<unmatched>") - value(
            before, "http_requests_total", handler="<unmatched>"
        )
        assert unmatched == pytest.approx(len(paths))
        assert not any(h.startswith("/no/") or h.endswith("/") for h in handlers(after))
        assert handlers_counted(before, after) <= route_templates(app) | {"<unmatched>"}

    async def test_latency_histogram_by_method_handler_status(
        self, client: httpx.AsyncClient
    ) -> None:
        labels = {"handler": "/health", "method": "GET", "status": "200"}
        before = await scrape(client)
        assert (await client.get("/health")).status_code == 200
        after = await scrape(client)

        count = "http_request_duration_seconds_count"
        assert value(after, count, **labels) - value(before, count, **labels) == 1
        buckets = [
            sample
            for sample in samples(after)
            if sample.name == "http_request_duration_seconds_bucket"
            and labels.items() <= sample.labels.items()
        ]
        assert {sample.labels["le"] for sample in buckets} >= {"0.005", "1.0", "+Inf"}

    async def test_scrapes_are_not_counted(self, client: httpx.AsyncClient) -> None:
        await scrape(client)
        text = await scrape(client)
        assert "/metrics" not in handlers(text)
        assert value(text, "http_requests_inprogress") == 0

    async def test_in_progress_counts_a_request_held_on_a_lock(
        self, editor: httpx.AsyncClient, settings: Settings
    ) -> None:
        created = (await editor.post("/products", json=product_data())).json()
        async with product_row_lock(settings, created["id"]) as lock:
            patch = asyncio.create_task(
                editor.patch(f"/products/{created['id']}", json={"name": "renamed"})
            )
            await lock.wait_for_waiters()
            during = await scrape(editor)
            await lock.release()
            response = await asyncio.wait_for(patch, POLL_TIMEOUT)
        assert response.status_code == 200
        after = await scrape(editor)

        assert value(during, "http_requests_inprogress", method="PATCH") == 1
        assert value(during, "catalog_db_pool_checked_out") >= 1
        assert value(after, "http_requests_inprogress", method="PATCH") == 0


class TestExposition:
    async def test_every_family_is_exported_and_parses(self, client: httpx.AsyncClient) -> None:
        await client.get("/health")
        families = {
            family.name: family for family in text_string_to_metric_families(await scrape(client))
        }

        assert families["http_requests"].type == "counter"
        assert families["http_request_duration_seconds"].type == "histogram"
        assert families["http_requests_inprogress"].type == "gauge"
        for name in POOL_GAUGES:
            assert families[name].type == "gauge", name
            assert len(families[name].samples) == 1
        assert "internal" in families["catalog_db_pool_waiters"].documentation
        for name, label in BUSINESS_COUNTERS.items():
            family = families[name]
            assert family.type == "counter"
            assert family.samples, f"{name} has no series before its first event"
            if label is not None:
                assert all(label in sample.labels for sample in family.samples)

    async def test_business_counters_start_at_zero_and_count(
        self, editor: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        before = await scrape(editor)
        assert value(before, "catalog_db_errors_total", kind="statement_timeout") == 0
        created = await editor.post("/products", json=product_data())
        assert created.status_code == 201
        stock = await editor.post(f"/products/{created.json()['id']}/stock", json={"delta": 2})
        assert stock.status_code == 200
        login = await client.post(
            "/auth/token", data={"username": "editor@example.com", "password": "wrong"}
        )
        assert login.status_code == 401
        after = await scrape(editor)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("catalog_products_created_total") == 1
        assert moved("catalog_stock_adjustments_total", outcome="applied") == 1
        assert moved("catalog_login_failures_total", reason="invalid_credentials") == 1

    async def test_promtool_accepts_the_exposition(self, client: httpx.AsyncClient) -> None:
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.skip("promtool is not installed (Debian package prometheus; make test-tools)")
        await client.get("/health")
        text = await scrape(client)
        result = await asyncio.to_thread(
            subprocess.run,
            [promtool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


class TestPoolGauges:
    async def test_gauges_follow_checked_out_connections(
        self, client: httpx.AsyncClient, app: object
    ) -> None:
        engine = app.state.engine  # type: ignore[attr-defined]
        baseline = value(await scrape(client), "catalog_db_pool_checked_out")
        async with engine.connect(), engine.connect():
            during = await scrape(client)
        after = await scrape(client)

        assert value(during, "catalog_db_pool_checked_out") == baseline + 2
        assert value(during, "catalog_db_pool_connections") >= baseline + 2
        assert value(during, "catalog_db_pool_size") == 5
        assert value(during, "catalog_db_pool_max_overflow") == 20
        assert value(after, "catalog_db_pool_checked_out") == baseline

    async def test_overflow_and_waiters(self, database_url: str) -> None:
        settings = make_settings(database_url, None, db_pool_size=1, db_max_overflow=1)
        engine = build_engine(settings)
        pool = engine.sync_engine.pool
        try:
            async with engine.connect(), engine.connect():
                full = read_pool(pool, settings.db_max_overflow)
                third: asyncio.Task[AsyncConnection] = asyncio.create_task(engine.connect().start())
                deadline = time.monotonic() + POLL_TIMEOUT
                while read_pool(pool, 1)["catalog_db_pool_waiters"] < 1:
                    assert time.monotonic() < deadline, "the third checkout never waited"
                    await asyncio.sleep(0.01)
                waiting = read_pool(pool, settings.db_max_overflow)
            connection = await asyncio.wait_for(third, POLL_TIMEOUT)
            served = read_pool(pool, settings.db_max_overflow)
            await connection.close()
        finally:
            await engine.dispose()

        assert full["catalog_db_pool_checked_out"] == 2
        assert full["catalog_db_pool_overflow"] == 1
        assert full["catalog_db_pool_connections"] == 2
        assert waiting["catalog_db_pool_waiters"] == 1
        assert served["catalog_db_pool_waiters"] == 0
        assert served["catalog_db_pool_checked_out"] == 1


class TestMetricsDirectory:
    def test_several_workers_get_a_fresh_directory_removed_at_exit(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
        with _metrics_dir(2):
            directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
            assert directory.is_dir()
            assert not any(directory.iterdir())
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        assert not directory.exists()

    def test_one_worker_stays_single_process(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
        with _metrics_dir(1):
            assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ

    def test_a_given_directory_is_emptied_of_stale_files(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        (tmp_path / "counter_1.db").write_bytes(b"stale")
        (tmp_path / "keep.txt").write_text("not ours")
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        with _metrics_dir(2):
            assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)
            assert not (tmp_path / "counter_1.db").exists()
        assert (tmp_path / "keep.txt").exists()


# --------------------------------------------------------------------------- several workers


def _requests_by_pid(directory: Path, handler: str) -> dict[int, float]:
    """What each worker counted itself, read from its own metrics file."""
    counts: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        families = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        counts[pid] = sum(
            sample.value
            for family in families
            for sample in family.samples
            if sample.name == "http_requests_total" and sample.labels.get("handler") == handler
        )
    return counts


def _live_pids(directory: Path) -> set[int]:
    return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("gauge_livesum_*.db")}


def _poll(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_one_scrape_sums_every_worker(settings: Settings, tmp_path: Path) -> None:
    """N readiness checks spread over two workers: every scrape says N, whichever worker
    answers it, and the pool gauges add up both workers' pools.

    A worker killed with SIGKILL is replaced; its requests still count, its pool leaves the
    gauges (pool size = 2 workers x DB_POOL_SIZE=3, not 3 x 3).
    """
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left over from an earlier run")
    with running_server(
        settings, tmp_path, workers=2, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)
    ) as server:
        sent = 0
        # Fresh connections let the kernel hand requests to either worker; go on until
        # both have answered some (bounded).
        with httpx.Client(
            base_url=server.base_url,
            timeout=5,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as http:
            while sum(1 for n in _requests_by_pid(metrics_dir, READY).values() if n) < 2:
                assert sent < 400, f"one worker answered all of {sent} requests"
                for _ in range(10):
                    assert http.get(READY).status_code == 200
                    sent += 1
            scrapes = [http.get("/metrics").text for _ in range(8)]

            for text in scrapes:
                assert value(text, "http_requests_total", handler=READY) == sent
                assert "/metrics" not in handlers(text)
                assert value(text, "catalog_db_pool_size") == 2 * 3
                # Each worker keeps the connection its readiness checks opened.
                assert value(text, "catalog_db_pool_connections") >= 2
            assert not (metrics_dir / "counter_1.db").exists()

            victim = min(_live_pids(metrics_dir))
            os.kill(victim, signal.SIGKILL)

            def replaced() -> bool:
                text = http.get("/metrics").text
                pids = _live_pids(metrics_dir)
                return (
                    victim not in pids
                    and len(pids) == 2
                    and value(text, "catalog_db_pool_size") == 2 * 3
                )

            _poll("a replacement worker", replaced)
            after = http.get("/metrics").text
        assert value(after, "http_requests_total", handler=READY) == sent
        server.terminate()
        assert server.wait() == 0
