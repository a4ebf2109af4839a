"""Every error path answers RFC 9457 problem+json, and every response carries X-Request-ID."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from tests.factories import product_data

pytestmark = pytest.mark.usefixtures("users")
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert PROBLEM_KEYS <= body.keys()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


class TestProblems:
    async def test_unknown_route_is_404(self, viewer: httpx.AsyncClient) -> None:
        body = assert_problem(await viewer.get("/nope/nothing"), 404)
        assert body["instance"] == "/nope/nothing"

    @pytest.mark.parametrize(
        ("method", "path", "allow"),
        [
            # Two routes share /products: Allow lists both, not only the first that matched.
            ("PUT", "/products", "GET, POST"),
            ("OPTIONS", "/products", "GET, POST"),
            ("PUT", "/products/7", "DELETE, GET, PATCH"),
            # A fixed path is not /products/{product_id} with a bad id (that was a 422).
            ("PATCH", "/products/export", "GET"),
            ("PATCH", "/products/import", "POST"),
            ("PATCH", "/users/me", "GET"),
            ("OPTIONS", "/products/7/stock", "POST"),
        ],
    )
    async def test_wrong_method_is_405_with_every_allowed_method(
        self, editor: httpx.AsyncClient, method: str, path: str, allow: str
    ) -> None:
        response = await editor.request(method, path)
        body = assert_problem(response, 405)
        assert response.headers["allow"] == allow
        assert allow in str(body["detail"])

    async def test_allow_matches_the_document(self, app: object, editor: httpx.AsyncClient) -> None:
        paths = app.openapi()["paths"]  # type: ignore[attr-defined]
        for template, item in paths.items():
            path = template.replace("{product_id}", "7").replace("{category_id}", "7")
            path = path.replace("{user_id}", "7")
            response = await editor.request("TRACE", path)
            assert response.status_code == 405, path
            documented = sorted(method.upper() for method in item if method != "parameters")
            assert response.headers["allow"].split(", ") == documented, path

    async def test_validation_error_lists_errors_without_echoing_input(
        self, editor: httpx.AsyncClient
    ) -> None:
        response = await editor.post("/products", json=product_data(price="secret-ish-value"))
        body = assert_problem(response, 422)
        errors = body["errors"]
        assert isinstance(errors, list)
        assert errors[0].keys() == {"loc", "msg", "type"}
        assert "secret-ish-value" not in response.text

    async def test_body_over_limit_is_413_before_reading(self, editor: httpx.AsyncClient) -> None:
        big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
        response = await editor.post(
            "/products", content=big, headers={"content-type": "application/json"}
        )
        assert_problem(response, 413)

    async def test_chunked_body_over_limit_is_413(self, editor: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"name": "'
            for _ in range(200):
                yield b"x" * 8192

        response = await editor.post(
            "/products", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_problem(response, 413)


class TestBodiesThatAreNotObjects:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/products"),
            ("PATCH", "/products/1"),
            ("POST", "/products/1/stock"),
            ("POST", "/categories"),
            ("PATCH", "/categories/1"),
            ("POST", "/users"),
            ("PATCH", "/users/3"),
            ("POST", "/auth/refresh"),
            ("POST", "/auth/logout"),
        ],
    )
    @pytest.mark.parametrize("body", [b"-4.6955899918441275e+246", b"7", b'"text"', b"[]", b"true"])
    async def test_are_a_422(
        self, admin: httpx.AsyncClient, method: str, path: str, body: bytes
    ) -> None:
        # A JSON number arrives as a Decimal: read "from attributes" it was an empty update.
        response = await admin.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
        problem = assert_problem(response, 422)
        assert problem["errors"][0]["loc"][0] == "body"  # type: ignore[index]


class TestIdsInPaths:
    @pytest.mark.parametrize(
        ("method", "template"),
        [
            ("GET", "/products/{}"),
            ("PATCH", "/products/{}"),
            ("DELETE", "/products/{}"),
            ("POST", "/products/{}/stock"),
            ("GET", "/products/{}/stock/history"),
            ("GET", "/categories/{}"),
            ("GET", "/users/{}"),
        ],
    )
    @pytest.mark.parametrize("digits", [20, 4301, 5000])
    async def test_an_id_too_long_for_any_id_is_a_422(
        self, admin: httpx.AsyncClient, method: str, template: str, digits: int
    ) -> None:
        # Python's int() refuses more than 4,300 digits: once a 500 from the path convertor.
        response = await admin.request(method, template.format("9" * digits), json={})
        body = assert_problem(response, 422)
        assert body["errors"][0]["loc"][0] == "path"  # type: ignore[index]

    async def test_the_largest_id_is_looked_up(self, admin: httpx.AsyncClient) -> None:
        assert_problem(await admin.get("/products/9223372036854775807"), 404)
        assert_problem(await admin.get("/products/9223372036854775808"), 422)


class TestRequestId:
    async def test_generated_when_absent(self, client: httpx.AsyncClient) -> None:
        first = (await client.get("/health")).headers["x-request-id"]
        second = (await client.get("/health")).headers["x-request-id"]
        assert len(first) == 32
        assert first != second

    async def test_valid_incoming_id_is_kept(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health", headers={"X-Request-ID": "abc.DEF-123_x"})
        assert response.headers["x-request-id"] == "abc.DEF-123_x"

    @pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", ""])
    async def test_invalid_incoming_id_is_replaced(
        self, client: httpx.AsyncClient, bad: str
    ) -> None:
        response = await client.get("/health", headers={"X-Request-ID": bad})
        assert response.headers["x-request-id"] != bad
        assert len(response.headers["x-request-id"]) == 32


class TestTransactionPerRequest:
    async def test_a_failed_commit_never_answers_201(
        self, editor: httpx.AsyncClient, app: object
    ) -> None:
        """A deferred constraint fails at COMMIT: the client must not be told it worked."""
        engine = app.state.engine  # type: ignore[attr-defined]
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN IF NEW.sku = 'FAIL-AT-COMMIT' THEN RAISE EXCEPTION 'refused'; END IF;"
                    " RETURN NEW; END $$"
                )
            )
            await connection.execute(
                text(
                    "CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON products "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit()"
                )
            )
        try:
            response = await editor.post("/products", json=product_data(sku="FAIL-AT-COMMIT"))
            assert response.status_code >= 500
            assert response.headers["content-type"] == "application/problem+json"
            async with engine.connect() as connection:
                count = await connection.scalar(text("SELECT count(*) FROM products"))
            assert count == 0
        finally:
            async with engine.begin() as connection:
                await connection.execute(text("DROP TRIGGER fail_at_commit ON products"))
                await connection.execute(text("DROP FUNCTION fail_at_commit()"))

    async def test_an_error_after_a_flush_rolls_everything_back(
        self, editor: httpx.AsyncClient
    ) -> None:
        first = (await editor.post("/products", json=product_data(sku="KEEP"))).json()
        response = await editor.patch(
            f"/products/{first['id']}", json={"name": "renamed", "category_id": 999}
        )
        assert response.status_code == 422
        assert (await editor.get(f"/products/{first['id']}")).json() == first
