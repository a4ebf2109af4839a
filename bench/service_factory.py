"""The service with its hot-read fast path off, served as `catalog serve` serves the service.

    .venv/bin/python -m bench.service_factory   (HOST, PORT and the rest from the environment)

bench/read_bench.py runs it next to `catalog serve` so the note can say what the fast path
(app.api.hot_reads) pays. Everything else, settings, logging and metrics, is the same.
"""

from __future__ import annotations

from fastapi import FastAPI

from app.core.config import get_settings
from app.main import create_app


def without_hot_reads() -> FastAPI:
    return create_app(get_settings(), hot_reads=False)


def main() -> None:
    import uvicorn

    settings = get_settings()
    # The same options as app.cli._serve with one worker.
    uvicorn.run(
        "bench.service_factory:without_hot_reads",
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
