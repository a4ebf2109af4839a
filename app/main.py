"""The application factory. Nothing connects at import time; the lifespan owns the pool."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import redis.asyncio as redis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware

from app.api.docs import install_docs
from app.api.metrics import install_metrics, metrics_process_stopped, watch_pool
from app.api.middleware import (
    BodyLimitMiddleware,
    EdgeMiddleware,
)
from app.api.problems import install_problem_handlers
from app.api.router import ROUTERS
from app.core.config import Settings, get_settings
from app.core.logging import configure_logging, get_logger
from app.core.security import AccessTokenVerifier
from app.db.engine import build_engine, build_sessionmaker
from app.db.watch import DatabaseWatch
from app.services.bulk_capacity import BulkCapacity
from app.services.idempotency import purge_periodically
from app.services.login_throttle import LoginThrottle
from app.services.pagination import CursorCodec
from app.services.password_hasher import PasswordHasher
from app.services.principals import PrincipalCache
from app.services.product_queries import ProductQueries
from app.services.users import ensure_first_admin

log = get_logger("app")
IMPORT_PATH = "/products/import"
IDEMPOTENCY_PURGE_INTERVAL_SECONDS = 600.0


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = build_engine(settings)
    app.state.engine = engine
    app.state.sessionmaker = build_sessionmaker(engine)
    # Exports and imports: a pool of their own, one connection per bulk slot.
    bulk_engine = build_engine(
        settings.model_copy(update={"db_pool_size": settings.bulk_pool_size, "db_max_overflow": 0})
    )
    app.state.bulk_engine = bulk_engine
    app.state.bulk_sessionmaker = build_sessionmaker(bulk_engine)
    app.state.bulk_capacity = BulkCapacity.from_settings(settings)
    app.state.principals = PrincipalCache(engine)
    app.state.product_queries = ProductQueries(
        engine, app.state.cursor_codec, rank_window=settings.search_rank_window
    )
    watch_pool(app)
    # Built before the first connection: it keeps track of every one the pool opens.
    watch = DatabaseWatch(engine, settings) if settings.db_pool_pre_ping else None
    if watch is not None:
        watch.include(bulk_engine)
    app.state.redis = (
        redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        if settings.redis_url
        else None
    )
    app.state.login_throttle = LoginThrottle.from_settings(settings, app.state.redis)
    app.state.password_hasher = PasswordHasher.from_settings(settings)
    await ensure_first_admin(app.state.sessionmaker, settings)
    log.info("started", environment=settings.environment.value, pool_size=settings.db_pool_size)
    # What startup built (modules, the app, its routes and schemas) lives as long as the
    # process: out of the collector's sight, a full collection no longer walks it, which had
    # paused every request in flight for tens of milliseconds (p99 under load).
    gc.freeze()
    purger = asyncio.create_task(
        purge_periodically(
            app.state.sessionmaker, interval_seconds=IDEMPOTENCY_PURGE_INTERVAL_SECONDS
        ),
        name="idempotency-key-purge",
    )
    watching = asyncio.create_task(watch.run(), name="database-watch") if watch else None
    try:
        yield
    finally:
        for task in (purger, watching):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        if app.state.redis is not None:
            await app.state.redis.aclose()
        await bulk_engine.dispose()
        await engine.dispose()
        app.state.password_hasher.close()
        log.info("stopped: connection pool closed")
        metrics_process_stopped()


def create_app(settings: Settings | None = None, *, fast_path: bool = True) -> FastAPI:
    """The service. `fast_path=False` has FastAPI solve every route's dependencies, also the
    plain ones (app.api.plain_dependencies): the tests and the benchmark compare both ways."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    middleware = [
        Middleware(EdgeMiddleware, hsts=settings.is_production),
    ]
    if settings.cors_origins:  # with no origin allowed, CORS would only cost time per request
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_credentials=True,
                allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "If-Match",
                    "If-None-Match",
                    "Idempotency-Key",
                    "X-Request-ID",
                ],
                expose_headers=[
                    "ETag",
                    "Location",
                    "X-Request-ID",
                    "Retry-After",
                    "Idempotent-Replayed",
                ],
            )
        )
    middleware.append(
        Middleware(
            BodyLimitMiddleware,
            default_limit=settings.max_body_bytes,
            limits_by_path={IMPORT_PATH: settings.max_import_bytes},
        )
    )
    app = FastAPI(
        title="Catalog service",
        version="0.1.0",
        summary="Products and categories behind storefronts and back-office tools.",
        lifespan=lifespan,
        middleware=middleware,
        docs_url=None,
        redoc_url=None,
        # FastAPI's native OpenTelemetry asks the global providers whether to trace on every
        # request (7% of a hot read); this service reports through Prometheus and its logs.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.fast_path = fast_path
    app.state.cursor_codec = CursorCodec(settings.secret_key.get_secret_value())
    app.state.token_verifier = AccessTokenVerifier(settings)
    install_problem_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_docs(app)
    install_metrics(app)
    return app
