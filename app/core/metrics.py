"""Every Prometheus metric the service defines, in one module."""

from __future__ import annotations

from prometheus_client import Counter

DB_ERRORS = Counter("catalog_db_errors_total", "Database errors by kind", ["kind"])
PRODUCTS_CREATED = Counter("catalog_products_created_total", "Products created")
STOCK_ADJUSTMENTS = Counter(
    "catalog_stock_adjustments_total", "Stock adjustments by outcome", ["outcome"]
)
IMPORT_ROWS = Counter("catalog_import_rows_total", "Imported rows by outcome", ["outcome"])
LOGIN_FAILURES = Counter("catalog_login_failures_total", "Failed logins by reason", ["reason"])
