from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import MissingSecretKey, Settings


def build(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


STRONG = "Zq8v-3kLx_P0wN7yR2tB5mJ9cH4dF6gS"


class TestSecretKey:
    @pytest.mark.parametrize("environment", ["development", "test", "production"])
    def test_there_is_no_default_key(self, environment: str) -> None:
        settings = build(environment=environment)  # migrate, seed, import need no key
        with pytest.raises(MissingSecretKey, match="SECRET_KEY is not set"):
            settings.secret_key  # noqa: B018

    @pytest.mark.parametrize(
        "placeholder",
        [
            "dev-insecure-secret-key-change-me",  # the old built-in default
            "change-me-in-production-please-32chars",  # the old docker-compose default
            "CHANGE_ME",  # deploy/k8s/secret.example.yaml
            "Change-Me-0123456789-abcdefghijklmnop",  # long, varied, and still an example
        ],
    )
    def test_published_examples_are_refused_in_production(self, placeholder: str) -> None:
        with pytest.raises(ValidationError, match="SECRET_KEY") as raised:
            build(environment="production", secret_key=placeholder)
        assert placeholder not in str(raised.value)  # the error may reach a log

    @pytest.mark.parametrize(
        "secret", ["short", STRONG[:31], "a" * 64, "abcabcabcabcabcabcabcabcabcabcabc"]
    )
    def test_short_or_low_entropy_keys_are_refused_in_production(self, secret: str) -> None:
        with pytest.raises(ValidationError, match="SECRET_KEY"):
            build(environment="production", secret_key=secret)

    def test_a_strong_key_is_accepted_in_production(self) -> None:
        settings = build(environment="production", secret_key=STRONG)
        assert settings.secret_key.get_secret_value() == STRONG

    def test_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SECRET_KEY", STRONG)
        assert build(environment="production").secret_key.get_secret_value() == STRONG

    def test_any_key_outside_production(self) -> None:
        assert build(secret_key="short").secret_key.get_secret_value() == "short"


class TestSettingsValidation:
    def test_cors_origins_from_comma_list(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
        assert build().cors_origins == ["https://a.example", "https://b.example"]

    def test_cors_wildcard_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="CORS_ORIGINS"):
            build(cors_origins="*")

    def test_database_url_needs_asyncpg(self) -> None:
        with pytest.raises(ValidationError, match="asyncpg"):
            build(database_url="postgresql://u@h/db")

    def test_read_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DB_POOL_SIZE", "3")
        monkeypatch.setenv("PUBLIC_READ", "true")
        settings = build()
        assert settings.db_pool_size == 3
        assert settings.public_read is True

    def test_secret_is_not_in_repr(self) -> None:
        settings = build(secret_key="super-secret-value-that-must-not-leak")
        assert "super-secret-value" not in repr(settings)
