from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import Settings


def build(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


class TestProductionSecret:
    def test_default_secret_is_refused_in_production(self) -> None:
        with pytest.raises(ValidationError, match="SECRET_KEY"):
            build(environment="production")

    @pytest.mark.parametrize("secret", ["short", "a" * 64, "abcabcabcabcabcabcabcabcabcabcabc"])
    def test_weak_secret_is_refused_in_production(self, secret: str) -> None:
        with pytest.raises(ValidationError, match="SECRET_KEY"):
            build(environment="production", secret_key=secret)

    def test_strong_secret_is_accepted(self) -> None:
        settings = build(environment="production", secret_key="Zq8v-3kLx_P0wN7yR2tB5mJ9cH4dF6gS")
        assert settings.is_production

    def test_default_secret_is_fine_in_development(self) -> None:
        assert not build().is_production


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
