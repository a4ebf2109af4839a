"""Every Prometheus metric the service defines, in one module.

The HTTP metrics are recorded through prometheus-fastapi-instrumentator and the pool gauges
are read when Prometheus scrapes (see app/api/metrics.py). Under several uvicorn workers,
PROMETHEUS_MULTIPROC_DIR makes every value here land in a per-process file that a scrape sums.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double the output and no query here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

DB_ERRORS = Counter("catalog_db_errors_total", "Database errors by kind", ["kind"])
PRODUCTS_CREATED = Counter("catalog_products_created_total", "Products created")
STOCK_ADJUSTMENTS = Counter(
    "catalog_stock_adjustments_total", "Stock adjustments by outcome", ["outcome"]
)
IMPORT_ROWS = Counter("catalog_import_rows_total", "Imported rows by outcome", ["outcome"])
# One reason for an unknown email, a wrong password and a deactivated account, as the 401 is
# the same for all three: /metrics needs no token and must not tell which emails exist.
LOGIN_FAILURES = Counter("catalog_login_failures_total", "Refused logins by reason", ["reason"])

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route template (handler) and status code",
    ["method", "handler", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by method, handler and status",
    ["method", "handler", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_REQUESTS_IN_PROGRESS = Gauge(
    "http_requests_inprogress",
    "HTTP requests being served right now, by method",
    ["method"],
    multiprocess_mode="livesum",
)

METRICS_PATH = "/metrics"
# A client may send any method token; anything else is one label value, not one per token.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_in_progress: dict[str, Gauge] = {}


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


def requests_in_progress(method: str) -> Gauge:
    """The in-progress gauge of `method`'s label (`labels()` costs a lock per call)."""
    label = method_label(method)
    gauge = _in_progress.get(label)
    if gauge is None:
        gauge = _in_progress[label] = HTTP_REQUESTS_IN_PROGRESS.labels(label)
    return gauge


# Label values the code uses today, created at import so every series exists with 0 before
# its first event (rate() and alerts need the series to exist).
_KNOWN_LABELS: dict[Counter, tuple[str, ...]] = {
    DB_ERRORS: ("unavailable", "unique_violation", "invalid_data", "statement_timeout", "other"),
    STOCK_ADJUSTMENTS: (
        "applied",
        "insufficient-stock",
        "not-found",
        "precondition-failed",
        "precondition-required",
        "validation-error",
    ),
    IMPORT_ROWS: ("created", "updated", "unchanged", "failed"),
    LOGIN_FAILURES: (
        "invalid_credentials",
        "throttled_client",
        "throttled_account_client",
        "throttled_account",
        "busy",
    ),
}
for _counter, _values in _KNOWN_LABELS.items():
    for _value in _values:
        _counter.labels(_value)

# SQLAlchemy pool gauges: name -> help. A single process serves them from a collector that
# reads the pool at scrape time; under several workers each worker writes its reading into
# these unregistered livesum gauges, so a scrape shows the sum over the live workers.
POOL_GAUGES: dict[str, str] = {
    "catalog_db_pool_size": "Connections the pool keeps (DB_POOL_SIZE; summed over workers)",
    "catalog_db_pool_max_overflow": "Extra connections allowed beyond the pool size",
    "catalog_db_pool_connections": "Open database connections, idle plus checked out",
    "catalog_db_pool_checked_out": "Connections lent to requests right now",
    "catalog_db_pool_overflow": "Open connections beyond the pool size",
    "catalog_db_pool_waiters": (
        "Requests waiting for a connection, read from the asyncio queue inside "
        "SQLAlchemy's pool (an internal; 0 when it cannot be read)"
    ),
}
POOL_MULTIPROCESS_GAUGES = {
    name: Gauge(name, text, registry=None, multiprocess_mode="livesum")
    for name, text in POOL_GAUGES.items()
}
