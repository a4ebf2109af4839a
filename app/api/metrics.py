"""GET /metrics: HTTP metrics through prometheus-fastapi-instrumentator, pool gauges read at
scrape time, and prometheus_client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set
(`catalog serve --workers N` sets it), so one scrape sums the whole worker group.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator.metrics import Info
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, QueuePool

from app.api.instrumentator_internals import HandlerAfterRouting
from app.api.middleware import route_template
from app.core.metrics import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    METRICS_PATH,
    POOL_GAUGES,
    POOL_MULTIPROCESS_GAUGES,
    method_label,
)
from app.db.internals import pool_waiters

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_POOL_EVENTS = ("connect", "checkout", "checkin", "close", "close_detached", "invalidate")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def read_pool(pool: Pool, max_overflow: int) -> dict[str, float]:
    """The pool gauges' values now; empty for a pool that is not a QueuePool."""
    if not isinstance(pool, QueuePool):
        return {}
    checked_out = pool.checkedout()
    return {
        "catalog_db_pool_size": pool.size(),
        "catalog_db_pool_max_overflow": max_overflow,
        "catalog_db_pool_connections": pool.checkedin() + checked_out,
        "catalog_db_pool_checked_out": checked_out,
        # QueuePool counts overflow from -pool_size (connections not opened yet count below 0).
        "catalog_db_pool_overflow": max(pool.overflow(), 0),
        "catalog_db_pool_waiters": pool_waiters(pool),
    }


def _engine_reading(app: FastAPI) -> dict[str, float]:
    engine: AsyncEngine | None = getattr(app.state, "engine", None)
    if engine is None:  # before startup or after shutdown
        return {}
    return read_pool(engine.sync_engine.pool, app.state.settings.db_max_overflow)


class PoolCollector(Collector):
    """The pool gauges of one app's engine, read when Prometheus scrapes."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        for name, value in _engine_reading(self._app).items():
            yield GaugeMetricFamily(name, POOL_GAUGES[name], value=value)


class _PoolPublisher:
    """Under several workers: writes this worker's pool reading to its metrics file."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._scheduled = False

    def publish(self) -> None:
        self._scheduled = False
        for name, value in _engine_reading(self._app).items():
            POOL_MULTIPROCESS_GAUGES[name].set(value)

    def on_pool_event(self, *_: object) -> None:
        # Pool events fire before the pool's bookkeeping is done (a connection being checked
        # in still counts as out): read once the current step of the event loop is over.
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.publish()
            return
        self._scheduled = True
        loop.call_soon(self.publish)


def watch_pool(app: FastAPI) -> None:
    """Called by the lifespan once the engine exists: keep the worker's pool reading current."""
    if multiprocess_dir() is None:
        return
    publisher = _PoolPublisher(app)
    app.state.pool_publisher = publisher
    # Listening on the engine follows the pool across engine.dispose(), which replaces it.
    for name in _POOL_EVENTS:
        event.listen(app.state.engine.sync_engine, name, publisher.on_pool_event)
    publisher.publish()


def metrics_process_stopped() -> None:
    """Called at shutdown: this worker's live gauges (pool, in progress) leave the sums."""
    if (directory := multiprocess_dir()) is not None:
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead_workers(directory: str) -> None:
    """A worker killed without a shutdown (OOM, SIGKILL) must not keep counting as live."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _record(info: Info) -> None:
    # The template of the route that answered (set by routing), never the raw path; a
    # request no route matched is "<unmatched>", as in the access log.
    labels = (method_label(info.method), route_template(info.request.scope), info.modified_status)
    HTTP_REQUESTS.labels(*labels).inc()
    HTTP_REQUEST_DURATION.labels(*labels).observe(info.modified_duration)


def install_metrics(app: FastAPI) -> None:
    """Instrument every request and serve GET /metrics."""
    app.add_middleware(
        HandlerAfterRouting,
        should_group_status_codes=False,
        excluded_handlers=[f"^{METRICS_PATH}$"],
        instrumentations=[_record],
    )
    pool_registry = CollectorRegistry(auto_describe=False)
    pool_registry.register(PoolCollector(app))

    @app.get(
        METRICS_PATH,
        tags=["monitoring"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: requests, latency, database pool, business counters."""
        directory = multiprocess_dir()
        if directory is None:
            body = generate_latest(REGISTRY) + generate_latest(pool_registry)
        else:
            publisher: _PoolPublisher | None = getattr(request.app.state, "pool_publisher", None)
            if publisher is not None:
                publisher.publish()
            _forget_dead_workers(directory)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            body = generate_latest(registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
