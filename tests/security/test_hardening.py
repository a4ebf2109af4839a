"""CORS from settings, security headers, and the body limit enforced while the body streams."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.core.config import Environment, MissingSecretKey, Settings
from app.main import create_app
from tests.conftest import make_settings
from tests.factories import product_data

pytestmark = pytest.mark.usefixtures("users")

SHOP = "https://shop.example"
STRONG_SECRET = "Zq3-production-secret-9fK2mX7pL0vB4nR8tW1yC6"


@asynccontextmanager
async def client_for(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    configured = make_settings(str(settings.database_url), settings.redis_url, **overrides)
    application = create_app(configured)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


class TestCors:
    async def test_listed_origin_gets_a_preflight_with_credentials(
        self, settings: Settings
    ) -> None:
        async with client_for(settings, cors_origins=[SHOP]) as client:
            response = await client.options(
                "/products",
                headers={
                    "Origin": SHOP,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == SHOP
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "authorization" in response.headers["access-control-allow-headers"].lower()

    async def test_listed_origin_reads_responses(self, settings: Settings) -> None:
        async with client_for(settings, cors_origins=[SHOP]) as client:
            response = await client.get("/health", headers={"Origin": SHOP})
        assert response.headers["access-control-allow-origin"] == SHOP
        assert "x-request-id" in response.headers["access-control-expose-headers"].lower()

    async def test_other_origin_gets_nothing(self, settings: Settings) -> None:
        async with client_for(settings, cors_origins=[SHOP]) as client:
            preflight = await client.options(
                "/products",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            )
            simple = await client.get("/health", headers={"Origin": "https://evil.example"})
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-origin" not in simple.headers

    async def test_no_origin_is_allowed_by_default(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health", headers={"Origin": SHOP})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-credentials" not in response.headers

    def test_wildcard_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="not allowed"):
            Settings(_env_file=None, cors_origins="*")  # type: ignore[call-arg]
        parsed = Settings(_env_file=None, cors_origins=f"{SHOP}, https://b.example")  # type: ignore[call-arg]
        assert parsed.cors_origins == [SHOP, "https://b.example"]


class TestSigningKey:
    @pytest.mark.parametrize("environment", list(Environment))
    def test_no_app_without_secret_key(self, settings: Settings, environment: Environment) -> None:
        keyless = Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment=environment,
            database_url=str(settings.database_url),
        )
        with pytest.raises(MissingSecretKey, match="SECRET_KEY is not set"):
            create_app(keyless)


class TestSecurityHeaders:
    @pytest.mark.parametrize("path", ["/health", "/no-such-route", "/products"])
    async def test_on_every_response(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "strict-transport-security" not in response.headers

    async def test_hsts_in_production_only(self, settings: Settings) -> None:
        async with client_for(
            settings, environment=Environment.production, secret_key=STRONG_SECRET
        ) as client:
            response = await client.get("/health")
        hsts = re.fullmatch(
            r"max-age=(\d+); includeSubDomains", response.headers["strict-transport-security"]
        )
        assert hsts is not None
        assert int(hsts[1]) >= 365 * 86400

    async def test_docs_render_under_the_csp(self, client: httpx.AsyncClient) -> None:
        docs = await client.get("/docs")
        assert docs.status_code == 200
        csp = docs.headers["content-security-policy"]
        directives = {}
        for directive in csp.split(";"):
            name, _, value = directive.strip().partition(" ")
            directives[name] = value
        # Swagger UI boots from an inline script and inline styles, with same-origin assets.
        assert "'self'" in directives["script-src"]
        assert "'unsafe-inline'" in directives["script-src"]
        assert "'self'" in directives["style-src"]
        assert "data:" in directives["img-src"]
        assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", docs.text)
        assert assets
        for asset in assets:
            assert asset.startswith("/"), f"{asset} is not same-origin: the CSP would block it"
            assert (await client.get(asset)).status_code == 200
        assert (await client.get("/docs/oauth2-redirect")).status_code == 200


class TestBodyLimit:
    async def test_chunked_body_without_length_is_cut_off_while_streaming(
        self, editor: httpx.AsyncClient, settings: Settings
    ) -> None:
        chunk = b" " * 65536
        total_chunks = 4 * settings.max_body_bytes // len(chunk)
        sent = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            yield b'{"sku": "BIG-1", "name": "'
            for _ in range(total_chunks):
                sent += 1
                yield chunk

        response = await editor.post(
            "/products", content=body(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        # Refused as soon as the limit was crossed, long before the end of the body.
        assert sent <= settings.max_body_bytes // len(chunk) + 2
        assert sent < total_chunks

    async def test_declared_length_over_the_limit_is_refused_up_front(
        self, editor: httpx.AsyncClient, settings: Settings
    ) -> None:
        response = await editor.post(
            "/products",
            content=b"x" * (settings.max_body_bytes + 1),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"

    async def test_small_chunked_body_goes_through(self, editor: httpx.AsyncClient) -> None:
        payload = httpx.Request("POST", "/", json=product_data()).content

        async def body() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 7):
                yield payload[start : start + 7]

        response = await editor.post(
            "/products", content=body(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 201, response.text

    async def test_login_form_is_limited_too(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        limit = app.state.settings.max_body_bytes

        async def body() -> AsyncIterator[bytes]:
            yield b"username=a%40example.com&password="
            for _ in range(limit // 1024 + 8):
                yield b"x" * 1024

        response = await client.post(
            "/auth/token",
            content=body(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 413
