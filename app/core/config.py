"""Typed settings read from the environment and an optional `.env` file."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"
MIN_SECRET_KEY_LENGTH = 32


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
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
    db_pool_timeout: float = Field(default=5.0, gt=0, description="seconds to wait for a pool slot")
    db_pool_pre_ping: bool = True
    db_pool_recycle: int = Field(default=1800, description="seconds before a connection is renewed")
    db_connect_timeout: float = Field(default=3.0, gt=0, description="seconds to open a connection")
    db_ping_timeout: float = Field(default=2.0, gt=0, description="seconds for the checkout ping")
    db_ping_idle_seconds: float = Field(
        default=1.0, ge=0, description="skip the ping for connections used this recently"
    )
    db_watch_interval_seconds: float = Field(
        default=1.0, gt=0, description="how often app.db.watch pings the server"
    )
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)
    search_rank_window: int = Field(
        default=200, ge=1, le=10_000, description="newest matches a search ranks by relevance"
    )
    redis_url: str | None = None

    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=14 * 86_400, ge=60)
    jwt_issuer: str = "catalog-service"
    jwt_audience: str = "catalog-api"
    first_admin_email: str | None = None
    first_admin_password: SecretStr | None = None
    login_max_failures: int = Field(default=5, ge=1, description="per account, per window")
    login_max_failures_per_client: int = Field(default=20, ge=1, description="per IP, per window")
    login_failure_window_seconds: int = Field(default=300, ge=1)

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
        if self.environment is Environment.production:
            key = self.secret_key.get_secret_value()
            if key == DEV_SECRET_KEY or len(key) < MIN_SECRET_KEY_LENGTH or len(set(key)) < 10:
                raise ValueError(
                    "SECRET_KEY must be set to a random value of at least "
                    f"{MIN_SECRET_KEY_LENGTH} characters in production"
                )
        return self

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.production


@lru_cache
def get_settings() -> Settings:
    return Settings()
