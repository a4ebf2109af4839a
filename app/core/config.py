"""Typed settings read from the environment and an optional `.env` file."""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MIN_SECRET_KEY_LENGTH = 32
# Example values published in this repository and its history; never a production key.
PLACEHOLDER_SECRET_KEYS = frozenset(
    {
        "dev-insecure-secret-key-change-me",  # the old built-in default
        "change-me-in-production-please-32chars",  # docker-compose.yml's old default
        "CHANGE_ME",  # deploy/k8s/secret.example.yaml
    }
)


class MissingSecretKey(RuntimeError):
    """Raised where a signing key is needed and SECRET_KEY is not set."""

    def __init__(self) -> None:
        super().__init__(
            "SECRET_KEY is not set: it signs access tokens and cursors, so the service does not "
            "start without it. Set it to a long random value (python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))'); `make run` makes one under .data/ for development."
        )


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # the input holds SECRET_KEY and passwords
    )

    environment: Environment = Environment.development
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")

    # A SQLAlchemy URL rather than PostgresDsn: a unix socket (`?host=/dir`, no netloc host)
    # is a valid address too.
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/catalog"
    # No overflow by default: under sustained load SQLAlchemy closes overflow connections on
    # return and opens new ones on the next checkout, which cost a third of read throughput
    # in bench/read_bench.py. A fixed pool queues the excess for up to DB_POOL_TIMEOUT instead.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    # A request sent to a silent database gets 503 within max(DB_CONNECT_TIMEOUT,
    # DB_WATCH_INTERVAL_SECONDS + DB_PING_TIMEOUT), and none waits longer than DB_POOL_TIMEOUT
    # for a slot: 2 s at most by default (app.db.watch).
    db_pool_timeout: float = Field(default=2.0, gt=0, description="seconds to wait for a pool slot")
    db_pool_pre_ping: bool = True
    db_pool_recycle: int = Field(default=1800, description="seconds before a connection is renewed")
    db_connect_timeout: float = Field(default=1.5, gt=0, description="seconds to open a connection")
    db_ping_timeout: float = Field(default=1.0, gt=0, description="seconds for the checkout ping")
    db_ping_idle_seconds: float = Field(
        default=1.0, ge=0, description="skip the ping for connections used this recently"
    )
    db_watch_interval_seconds: float = Field(
        default=0.5, gt=0, description="how often app.db.watch pings the server"
    )
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)
    # Exports and imports run on a pool of their own, one connection per slot, so slow bulk
    # clients never take the connections other requests need (app.services.bulk_capacity).
    # Per process: each worker has its own slots and pool.
    bulk_pool_size: int = Field(default=4, ge=1, description="exports and imports at once")
    bulk_max_per_user: int = Field(default=2, ge=1, description="bulk operations per user at once")
    bulk_queue_seconds: float = Field(
        default=1.0, ge=0, description="wait for a free bulk slot before answering 503"
    )
    # Also bounds how long an export's REPEATABLE READ snapshot holds back vacuum.
    bulk_export_deadline_seconds: float = Field(
        default=600.0, gt=0, description="an export still streaming after this is cut off"
    )
    search_rank_window: int = Field(
        default=200, ge=1, le=10_000, description="newest matches a search ranks by relevance"
    )
    redis_url: str | None = None

    # Read from SECRET_KEY. Optional here so that commands which sign nothing (migrate, seed,
    # import, create-user) run without it; whatever signs reads `secret_key`, which refuses.
    signing_secret: SecretStr | None = Field(default=None, validation_alias="secret_key")
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=14 * 86_400, ge=60)
    jwt_issuer: str = "catalog-service"
    jwt_audience: str = "catalog-api"
    first_admin_email: str | None = None
    first_admin_password: SecretStr | None = None
    # Failed logins are counted per account and client address (LOGIN_MAX_FAILURES), per
    # account from every address (a ceiling well above it, so strangers alone cannot lock an
    # account out of its owner's address) and per address (app.services.login_throttle).
    login_max_failures: int = Field(
        default=5, ge=1, description="per account from one client address, per window"
    )
    login_max_failures_per_account: int = Field(
        default=100, ge=1, description="per account from all client addresses, per window"
    )
    login_max_failures_per_client: int = Field(default=20, ge=1, description="per IP, per window")
    login_failure_window_seconds: int = Field(default=300, ge=1)
    # Per process. Argon2 takes a core for tenths of a second; past this many at once a login
    # is answered 503 within a quarter second instead of queueing (app.services.password_hasher).
    login_max_concurrent_hashes: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, description="password hashes at once"
    )

    cors_origins: Annotated[list[str], NoDecode] = []
    public_read: bool = False
    require_if_match: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_import_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    idempotency_ttl_seconds: int = Field(default=86_400, ge=86_400)
    shutdown_timeout_seconds: int = Field(default=20, ge=1)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        # Credentials are allowed for listed origins, so a wildcard would open them to all.
        if "*" in value:
            raise ValueError("CORS_ORIGINS must list origins; '*' is not allowed")
        return value

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as error:
            raise ValueError(f"DATABASE_URL is not a database URL: {error}") from None
        if url.drivername != "postgresql+asyncpg":
            raise ValueError("DATABASE_URL must use the postgresql+asyncpg:// scheme")
        if not url.database:
            raise ValueError("DATABASE_URL must name a database")
        return value

    @model_validator(mode="after")
    def _strong_secret_in_production(self) -> Self:
        if self.environment is Environment.production and self.signing_secret is not None:
            if _weak_secret(self.signing_secret.get_secret_value()):
                raise ValueError(
                    "SECRET_KEY must be a random value of at least "
                    f"{MIN_SECRET_KEY_LENGTH} characters in production, not an example"
                )
        return self

    @property
    def secret_key(self) -> SecretStr:
        """The signing key; MissingSecretKey when SECRET_KEY is unset (there is no default)."""
        if self.signing_secret is None:
            raise MissingSecretKey
        return self.signing_secret

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.production


def _weak_secret(key: str) -> bool:
    folded = "".join(c for c in key.lower() if c.isalnum())
    return (
        key in PLACEHOLDER_SECRET_KEYS
        or "changeme" in folded
        or len(key) < MIN_SECRET_KEY_LENGTH
        or len(set(key)) < 10
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
