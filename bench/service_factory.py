"""The service with its fast path off, served as `catalog serve` serves the service.

    .venv/bin/python -m bench.service_factory   (HOST, PORT and the rest from the environment)

bench/read_bench.py runs it next to `catalog serve` so the report can say what the fast path
(app.api.plain_dependencies: plain routes answered without FastAPI's dependency solving) pays.
Everything else, settings, logging and metrics, is the same.
"""

from __future__ import annotations

from fastapi import FastAPI

from app.core.config import get_settings
from app.main import create_app


def without_fast_path() -> FastAPI:
    return create_app(get_settings(), fast_path=False)


def main() -> None:
    import uvicorn

    settings = get_settings()
    # The same options as app.cli._serve with one worker.
    uvicorn.run(
        "bench.service_factory:without_fast_path",
        factory=True,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )


if __name__ == "__main__":
    main()
