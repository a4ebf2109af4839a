from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.core.exact_json import MAX_JSON_DEPTH
from app.main import create_app
from app.services import importer
from tests.conftest import bearer, make_settings
from tests.factories import category_data, product_data
from tests.services.test_import_rows import malformed_file

pytestmark = pytest.mark.usefixtures("users")

NDJSON = {"content-type": "application/x-ndjson"}
CSV = {"content-type": "text/csv"}
CSV_HEADER = "sku,name,description,price,currency,stock,status,category_id,tags,attributes\r\n"


def ndjson(*rows: dict[str, Any] | str) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


async def create(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    response = await client.post("/products", json=product_data(**overrides))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def import_body(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str] = NDJSON
) -> dict[str, Any]:
    response = await client.post("/products/import", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def catalog(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/products/export")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


class TestImport:
    async def test_ndjson_creates_valid_rows_and_reports_bad_lines(
        self, editor: httpx.AsyncClient
    ) -> None:
        body = ndjson(
            product_data(sku="IMP-1"),
            "",
            product_data(sku="IMP-2", price=0.29),
            product_data(sku="IMP-3", price="-1"),
            "{not json",
            "[1, 2]",
            product_data(sku="IMP-4", name="nul\x00byte"),
            product_data(sku="IMP-5", colour="red"),
        )
        report = await import_body(editor, body)
        assert report["created"] == 2
        assert report["updated"] == 0
        assert report["failed"] == 5
        assert [e["line"] for e in report["errors"]] == [4, 5, 6, 7, 8]
        assert report["errors"][0]["detail"].startswith("price:")
        assert "colour" in report["errors"][4]["detail"]
        products = {p["sku"]: p for p in await catalog(editor)}
        assert set(products) == {"IMP-1", "IMP-2"}
        assert products["IMP-2"]["price"] == "0.29"
        assert products["IMP-1"]["tags"] == ["sale", "new"]
        assert products["IMP-1"]["currency"] == "EUR"

    async def test_csv_header_is_line_one_and_cells_are_decoded(
        self, editor: httpx.AsyncClient
    ) -> None:
        category = (await editor.post("/categories", json=category_data())).json()
        body = (
            CSV_HEADER
            + f'C-1,Lamp,"two\r\nlines, and ""quotes""",12.50,usd,3,active,{category["id"]},'
            + 'Eco|New|eco,"{""watts"": 40, ""dimmable"": true, ""ratio"": 0.5}"\r\n'
            + "C-2,Plain,,1,EUR,,,,,\r\n"
            + "C-3,Bad price,,abc,EUR,,,,,\r\n"
            + "C-4,Too few cells\r\n"
        ).encode()
        report = await import_body(editor, body, CSV)
        assert (report["created"], report["failed"]) == (2, 2)
        assert [e["line"] for e in report["errors"]] == [5, 6]
        products = {p["sku"]: p for p in await catalog(editor)}
        lamp = products["C-1"]
        assert lamp["description"] == 'two\r\nlines, and "quotes"'
        assert (lamp["price"], lamp["currency"], lamp["stock"]) == ("12.50", "USD", 3)
        assert lamp["category_id"] == category["id"]
        assert lamp["tags"] == ["eco", "new"]
        assert lamp["attributes"] == {"watts": 40, "dimmable": True, "ratio": 0.5}
        plain = products["C-2"]
        assert (plain["description"], plain["stock"], plain["status"]) == ("", 0, "draft")
        assert (plain["category_id"], plain["tags"], plain["attributes"]) == (None, [], {})

    async def test_upsert_by_sku_ignoring_case_bumps_only_changed_rows(
        self, editor: httpx.AsyncClient
    ) -> None:
        changed = await create(editor, sku="Up-1", name="Old name")
        same = await create(editor, sku="Up-2")
        unchanged_row = {k: same[k] for k in product_data() if k in same}
        report = await import_body(
            editor,
            ndjson(
                product_data(sku="UP-1", name="New name"),
                unchanged_row,
                product_data(sku="UP-3"),
            ),
        )
        assert (report["created"], report["updated"], report["unchanged"]) == (1, 1, 1)
        products = {p["id"]: p for p in await catalog(editor)}
        assert products[changed["id"]]["name"] == "New name"
        assert products[changed["id"]]["sku"] == "UP-1"
        assert products[changed["id"]]["version"] == 2
        assert products[changed["id"]]["updated_at"] > changed["updated_at"]
        assert products[same["id"]] == same
        assert len(products) == 3

    async def test_a_sku_seen_earlier_in_the_file_is_refused(
        self, editor: httpx.AsyncClient
    ) -> None:
        report = await import_body(
            editor,
            ndjson(
                product_data(sku="DUP-1", name="first"),
                product_data(sku="dup-1", name="second"),
                product_data(sku="DUP-2", price="-5"),
                product_data(sku="dup-2", name="valid after an invalid one"),
            ),
        )
        assert (report["created"], report["updated"], report["failed"]) == (2, 0, 2)
        assert report["errors"][0] == {"line": 2, "detail": "SKU dup-1 is already on line 1"}
        assert report["errors"][1]["line"] == 3
        products = {p["sku"]: p["name"] for p in await catalog(editor)}
        assert products == {"DUP-1": "first", "dup-2": "valid after an invalid one"}

    async def test_unknown_category_is_a_row_error_not_a_500(
        self, editor: httpx.AsyncClient
    ) -> None:
        category = (await editor.post("/categories", json=category_data())).json()
        report = await import_body(
            editor,
            ndjson(
                product_data(sku="CAT-1", category_id=category["id"]),
                product_data(sku="CAT-2", category_id=999_999),
                product_data(sku="CAT-3", price="x"),
            ),
        )
        assert (report["created"], report["failed"]) == (1, 2)
        assert report["errors"] == [
            {"line": 2, "detail": "category_id 999999 does not exist"},
            {"line": 3, "detail": report["errors"][1]["detail"]},
        ]

    async def test_deleted_products_sku_is_free_for_a_new_product(
        self, editor: httpx.AsyncClient
    ) -> None:
        old = await create(editor, sku="GONE-1")
        assert (await editor.delete(f"/products/{old['id']}")).status_code == 204
        report = await import_body(editor, ndjson(product_data(sku="gone-1")))
        assert report["created"] == 1
        [product] = await catalog(editor)
        assert product["id"] != old["id"]

    async def test_errors_listed_are_capped_at_100_but_all_counted(
        self, editor: httpx.AsyncClient
    ) -> None:
        body = ndjson(*[product_data(price="-1") for _ in range(150)], product_data())
        report = await import_body(editor, body)
        assert (report["created"], report["failed"]) == (1, 150)
        assert [e["line"] for e in report["errors"]] == list(range(1, 101))

    async def test_listed_errors_are_the_first_100_by_line_of_every_kind(
        self, editor: httpx.AsyncClient
    ) -> None:
        unknown_category = [product_data(category_id=999_999) for _ in range(60)]
        bad_price = [product_data(price="-1") for _ in range(60)]
        report = await import_body(editor, ndjson(*unknown_category, *bad_price))
        assert report["failed"] == 120
        assert [e["line"] for e in report["errors"]] == list(range(1, 101))
        assert report["errors"][59]["detail"] == "category_id 999999 does not exist"
        assert report["errors"][60]["detail"].startswith("price:")

    async def test_a_stream_that_breaks_midway_changes_nothing(
        self, editor: httpx.AsyncClient
    ) -> None:
        before = await create(editor, sku="KEEP-1", name="Before")

        async def broken_body() -> AsyncIterator[bytes]:
            yield ndjson(product_data(sku="KEEP-1", name="After"))
            # More than one COPY batch reaches the database before the crash.
            yield ndjson(*[product_data() for _ in range(importer.COPY_BATCH_ROWS + 10)])
            raise RuntimeError("the worker crashed mid-import")

        response = await editor.post("/products/import", content=broken_body(), headers=NDJSON)
        assert response.status_code == 500
        assert await catalog(editor) == [before]

    async def test_csv_with_a_bad_header_is_422_and_applies_nothing(
        self, editor: httpx.AsyncClient
    ) -> None:
        response = await editor.post(
            "/products/import", content=b"sku,name,price,currency,colour\r\n", headers=CSV
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert "colour" in response.json()["detail"]
        response = await editor.post(
            "/products/import", content=b"sku,name\r\nA-1,x\r\n", headers=CSV
        )
        assert response.status_code == 422
        assert "price" in response.json()["detail"]
        assert await catalog(editor) == []

    @pytest.mark.parametrize(
        "content_type", ["application/json", "text/plain", "text/csv; charset=latin-1", ""]
    )
    async def test_other_content_types_are_415(
        self, editor: httpx.AsyncClient, content_type: str
    ) -> None:
        response = await editor.post(
            "/products/import",
            content=ndjson(product_data()),
            headers={"content-type": content_type},
        )
        assert response.status_code == 415
        assert response.headers["content-type"] == "application/problem+json"

    async def test_charset_parameter_utf8_is_accepted(self, editor: httpx.AsyncClient) -> None:
        headers = {"content-type": "application/x-ndjson; charset=UTF-8"}
        assert (await import_body(editor, ndjson(product_data()), headers))["created"] == 1

    async def test_viewer_gets_403_and_anonymous_401(
        self, viewer: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        body = ndjson(product_data())
        assert (
            await viewer.post("/products/import", content=body, headers=NDJSON)
        ).status_code == 403
        assert (
            await client.post("/products/import", content=body, headers=NDJSON)
        ).status_code == 401

    async def test_admin_may_import(self, admin: httpx.AsyncClient) -> None:
        assert (await import_body(admin, ndjson(product_data())))["created"] == 1


class TestImportBodyLimit:
    async def test_body_over_the_import_limit_is_413_and_applies_nothing(
        self, settings: Settings, users: object, editor: httpx.AsyncClient
    ) -> None:
        small = make_settings(str(settings.database_url), settings.redis_url, max_import_bytes=2048)
        application = create_app(small)
        rows = [product_data() for _ in range(40)]

        async def chunked() -> AsyncIterator[bytes]:
            for row in rows:
                yield ndjson(row)

        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test", headers=bearer(small, 2, "editor")
            ) as limited:
                response = await limited.post("/products/import", content=chunked(), headers=NDJSON)
                assert response.status_code == 413
                assert response.headers["content-type"] == "application/problem+json"
                small_enough = await limited.post(
                    "/products/import", content=ndjson(rows[0]), headers=NDJSON
                )
                assert small_enough.status_code == 200
        assert [p["sku"] for p in await catalog(editor)] == [rows[0]["sku"]]


def csv_rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body, newline="")))


class TestExport:
    async def test_ndjson_by_default_in_id_order_without_deleted_products(
        self, viewer: httpx.AsyncClient, editor: httpx.AsyncClient
    ) -> None:
        created = [await create(editor) for _ in range(3)]
        assert (await editor.delete(f"/products/{created[1]['id']}")).status_code == 204
        response = await viewer.get("/products/export")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        assert "products.ndjson" in response.headers["content-disposition"]
        lines = [json.loads(line) for line in response.text.splitlines()]
        fetched = [(await viewer.get(f"/products/{p['id']}")).json() for p in created[::2]]
        assert lines == fetched

    async def test_csv_by_accept(self, editor: httpx.AsyncClient) -> None:
        product = await create(editor, tags=["a|b", "c"], description="line\nbreak, comma")
        response = await editor.get("/products/export", headers={"accept": "text/csv"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        [row] = csv_rows(response.text)
        assert row["id"] == str(product["id"])
        assert row["description"] == "line\nbreak, comma"
        assert json.loads(row["tags"]) == ["a|b", "c"]
        assert json.loads(row["attributes"]) == product["attributes"]
        assert row["updated_at"] == product["updated_at"]

    async def test_empty_catalog_csv_is_just_the_header(self, viewer: httpx.AsyncClient) -> None:
        response = await viewer.get("/products/export", headers={"accept": "text/csv"})
        assert response.text.splitlines() == [
            "id,sku,name,description,price,currency,stock,status,category_id,tags,attributes,"
            "version,created_at,updated_at"
        ]

    @pytest.mark.parametrize(
        ("accept", "media_type"),
        [
            ("*/*", "application/x-ndjson"),
            ("text/*", "text/csv; charset=utf-8"),
            ("application/x-ndjson;q=0.2, text/csv;q=0.9", "text/csv; charset=utf-8"),
            ("text/csv;q=0, */*", "application/x-ndjson"),
        ],
    )
    async def test_accept_negotiation(
        self, viewer: httpx.AsyncClient, accept: str, media_type: str
    ) -> None:
        response = await viewer.get("/products/export", headers={"accept": accept})
        assert response.status_code == 200
        assert response.headers["content-type"] == media_type

    @pytest.mark.parametrize("accept", ["application/json", "text/html", "text/csv;q=0"])
    async def test_unavailable_format_is_406_problem(
        self, viewer: httpx.AsyncClient, accept: str
    ) -> None:
        response = await viewer.get("/products/export", headers={"accept": accept})
        assert response.status_code == 406
        assert response.headers["content-type"] == "application/problem+json"

    async def test_needs_a_token(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/products/export")).status_code == 401


async def export_body(client: httpx.AsyncClient, media_type: str) -> bytes:
    response = await client.get("/products/export", headers={"accept": media_type})
    assert response.status_code == 200
    return response.content


async def seed_variety(editor: httpx.AsyncClient) -> None:
    parent = (await editor.post("/categories", json=category_data())).json()
    rows = [
        {"price": "0.00", "stock": 0, "status": "draft", "tags": []},
        {"price": "9999999999.99", "category_id": parent["id"], "attributes": {}},
        {"description": 'quotes " and, commas\r\nand lines\n', "tags": ["[x", "y"]},
        {"name": "naïve ☃ 😀", "tags": ["p|q"], "attributes": {"f": 0.1, "n": -3, "b": True}},
        {"description": "  leading spaces", "status": "archived", "attributes": {"s": ""}},
    ]
    for row in rows:
        await create(editor, **row)


class TestRoundTrip:
    @pytest.mark.parametrize("media_type", ["application/x-ndjson", "text/csv"])
    async def test_importing_an_export_changes_nothing(
        self, editor: httpx.AsyncClient, media_type: str
    ) -> None:
        await seed_variety(editor)
        before = await catalog(editor)
        body = await export_body(editor, media_type)
        report = await import_body(editor, body, {"content-type": media_type})
        assert report == {
            "created": 0,
            "updated": 0,
            "unchanged": len(before),
            "failed": 0,
            "errors": [],
        }
        assert await catalog(editor) == before

    @pytest.mark.parametrize("media_type", ["application/x-ndjson", "text/csv"])
    async def test_an_export_recreates_the_catalog_in_an_empty_database(
        self, app: Any, editor: httpx.AsyncClient, media_type: str
    ) -> None:
        await seed_variety(editor)
        before = await catalog(editor)
        body = await export_body(editor, media_type)
        async with app.state.engine.begin() as connection:
            await connection.execute(text("TRUNCATE products RESTART IDENTITY CASCADE"))
        report = await import_body(editor, body, {"content-type": media_type})
        assert (report["created"], report["failed"]) == (len(before), 0)
        after = await catalog(editor)

        def content(p: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in p.items() if k not in ("id", "created_at", "updated_at")}

        assert [content(p) for p in after] == [content(p) for p in before]


class TestExportStreaming:
    # ASGI 2.3 servers report a disconnect through receive(); 2.4 servers make send() fail.
    @pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
    async def test_client_going_away_releases_the_connection(
        self, app: Any, editor: httpx.AsyncClient, settings: Settings, spec_version: str
    ) -> None:
        """The stream's own connection goes back to the pool clean when the client leaves."""
        rows = [product_data(description="x" * 500) for _ in range(3000)]
        assert (await import_body(editor, ndjson(*rows)))["created"] == 3000
        pool = app.state.bulk_engine.pool
        checked_out = pool.checkedout()
        first_chunk = asyncio.Event()
        chunks = []

        async def receive() -> dict[str, Any]:
            if not chunks:
                chunks.append(b"")
                return {"type": "http.request", "body": b"", "more_body": False}
            await first_chunk.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                if first_chunk.is_set() and spec_version == "2.4":
                    raise OSError("connection reset by peer")
                chunks.append(message["body"])
                first_chunk.set()

        token = bearer(settings, 3, "viewer")["Authorization"].encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": spec_version},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/products/export",
            "raw_path": b"/products/export",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test"), (b"authorization", token)],
            "client": ("127.0.0.1", 1234),
            "server": ("test", 80),
        }
        await asyncio.wait_for(app(scope, receive, send), timeout=30)
        sent = b"".join(chunks)
        assert 0 < sent.count(b"\n") < 3000  # cut short, not streamed to the end
        assert pool.checkedout() == checked_out
        async with app.state.engine.connect() as connection:  # the pool still works
            assert (
                await connection.execute(text("SELECT count(*) FROM products"))
            ).scalar() == 3000


def _deep_attributes(levels: int) -> bytes:
    return (
        json.dumps(product_data())[:-1].encode()
        + b', "attributes": {"k": '
        + (b"[" * levels + b"]" * levels)
        + b"}}"
    )


class TestMalformedImport:
    @pytest.mark.parametrize(
        ("body", "headers"),
        [
            (b"\n" + _deep_attributes(5000) + b"\n", NDJSON),
            (
                b'sku,name,price,currency,attributes\r\nA-1,n,1,EUR,"'
                + b"[" * 3000
                + b"]" * 3000
                + b'"\r\n',
                CSV,
            ),
        ],
    )
    async def test_nesting_past_the_limit_is_a_failed_line(
        self, editor: httpx.AsyncClient, body: bytes, headers: dict[str, str]
    ) -> None:
        report = await import_body(editor, body, headers)
        assert report["failed"] == 1
        [error] = report["errors"]
        assert error["line"] == 2
        assert f"nested more than {MAX_JSON_DEPTH} levels deep" in error["detail"]

    @pytest.mark.parametrize("fmt", ["ndjson", "csv"])
    @pytest.mark.parametrize("seed", range(2))
    async def test_malformed_rows_fail_at_their_lines_and_valid_rows_import(
        self, editor: httpx.AsyncClient, fmt: str, seed: int
    ) -> None:
        body, valid, bad = malformed_file(random.Random(seed), 80, fmt)
        report = await import_body(editor, body, NDJSON if fmt == "ndjson" else CSV)
        assert (report["created"], report["failed"]) == (len(valid), len(bad))
        assert {error["line"] for error in report["errors"]} == bad
        assert {p["sku"] for p in await catalog(editor)} == set(valid.values())


class TestMalformedBody:
    @pytest.mark.parametrize(
        "levels", [MAX_JSON_DEPTH + 1, 1025, 5000]
    )  # 1025: past orjson's limit too
    async def test_nesting_past_the_limit_is_a_400_problem_for_post_and_patch(
        self, editor: httpx.AsyncClient, levels: int
    ) -> None:
        product = await create(editor)
        deep = b"[" * levels + b"]" * levels
        patch = b'{"attributes": {"k": ' + deep + b"}}"
        for method, url, body in [
            ("POST", "/products", _deep_attributes(levels)),
            ("PATCH", f"/products/{product['id']}", patch),
        ]:
            response = await editor.request(
                method, url, content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"].endswith("/malformed-body")

    async def test_nesting_up_to_the_limit_is_read_and_refused_by_the_schema(
        self, editor: httpx.AsyncClient
    ) -> None:
        response = await editor.post(
            "/products",
            content=_deep_attributes(MAX_JSON_DEPTH - 2),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422
        assert {tuple(error["loc"][:3]) for error in response.json()["errors"]} == {
            ("body", "attributes", "k")
        }

    @pytest.mark.parametrize(
        ("field", "name"),
        [
            (b'"stock": 1e999999999', "stock"),
            (b'"category_id": 1e-999999999', "category_id"),
            (b'"price": 1e999999', "price"),
            (b'"stock": 1' + b"0" * 5000, "stock"),
        ],
    )
    async def test_numbers_no_field_could_hold_are_a_422_naming_the_field(
        self, editor: httpx.AsyncClient, field: bytes, name: str
    ) -> None:
        body = json.dumps(product_data())[:-1].encode() + b", " + field + b"}"
        response = await editor.post(
            "/products", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert [error["loc"][:2] for error in response.json()["errors"]] == [["body", name]]
