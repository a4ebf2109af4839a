"""The product's fields have one definition: the model and the schemas, which must agree, and
every column list and SQL rendering of a product is derived from them."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Column, DateTime, MetaData, Table, Text

from app.schemas.product import ProductCreate, ProductRead
from app.services import exporter, import_rows, importer, product_columns, seed
from app.services.product_columns import HIDDEN, READ, TABLE, WRITABLE, mismatches

APP = Path(__file__).resolve().parents[2] / "app"


def _table_with(*extra: Column[str]) -> Table:
    columns = [Column(name, Text) for name in TABLE.columns.keys()]
    return Table("products", MetaData(), *columns, *extra)


class TestModelAndSchemasAgree:
    def test_the_model_and_the_schemas_are_one_definition(self) -> None:
        assert mismatches(TABLE, ProductRead, ProductCreate) == []

    def test_a_read_field_without_a_column_is_reported(self) -> None:
        class Wider(ProductRead):
            color: str

        assert mismatches(TABLE, Wider, ProductCreate) == ["color is read but is no column"]

    def test_a_written_field_without_a_column_is_reported(self) -> None:
        class Wider(ProductCreate):
            color: str

        assert "color is written but is no column" in mismatches(TABLE, ProductRead, Wider)

    def test_a_column_nobody_reads_is_reported(self) -> None:
        table = _table_with(Column("color", Text))
        assert mismatches(table, ProductRead, ProductCreate) == [
            "column color is neither read nor hidden"
        ]

    def test_a_hidden_column_that_is_read_is_reported(self) -> None:
        assert mismatches(TABLE, ProductRead, ProductCreate, HIDDEN | {"sku"}) == [
            "hidden column sku is read"
        ]

    def test_the_hidden_columns_exist(self) -> None:
        assert set(TABLE.columns.keys()) >= HIDDEN


class TestDerivedFromTheDefinition:
    def test_the_json_has_every_read_field_in_schema_order(self) -> None:
        keys = re.findall(r"(?:\(|, )'(\w+)', ", product_columns.PRODUCT_JSON)
        assert tuple(keys) == READ

    def test_timestamps_and_decimals_render_as_the_schema_serializes_them(self) -> None:
        sql = product_columns.PRODUCT_JSON
        timestamps = [n for n in READ if isinstance(TABLE.columns[n].type, DateTime)]
        assert timestamps == ["created_at", "updated_at"]
        for name in timestamps:
            expected = f"to_char(p.{name} AT TIME ZONE 'UTC', '{product_columns.RFC3339}')"
            assert expected in sql
        assert "'price', p.price::text" in sql
        assert "'attributes', p.attributes," in sql  # JSONB nested as JSON, not as text

    def test_the_export_writes_the_read_fields(self) -> None:
        assert exporter.CSV_COLUMNS == READ
        assert exporter.CSV_QUERY.count("to_char(") == 2
        assert "p.attributes::text" in exporter.CSV_QUERY  # a CSV cell holds the JSON text

    def test_the_import_stages_and_copies_the_writable_fields(self) -> None:
        assert import_rows.RECORD_COLUMNS == ("line", *WRITABLE)
        assert importer.PRODUCT_COLUMNS == WRITABLE
        assert import_rows.READ_ONLY_FIELDS == set(READ) - set(WRITABLE)
        for definition in product_columns.column_definitions(WRITABLE):
            assert f"    {definition}" in importer.CREATE_STAGE
        assert "category_id BIGINT,\n" in importer.CREATE_STAGE  # nullable as in the model
        assert "sku VARCHAR(64) NOT NULL" in importer.CREATE_STAGE

    def test_a_record_holds_the_writable_values_as_copy_takes_them(self) -> None:
        product = ProductCreate.model_validate(
            {"sku": "A-1", "name": "Lamp", "price": "2.50", "currency": "eur", "tags": ["X"]}
            | {"status": "active", "attributes": {"watts": 40}}
        )
        record = import_rows._record(7, product)
        assert dict(zip(import_rows.RECORD_COLUMNS, record, strict=True)) == {
            "line": 7,
            "sku": "A-1",
            "name": "Lamp",
            "description": "",
            "price": Decimal("2.50"),
            "currency": "EUR",
            "stock": 0,
            "status": "active",
            "category_id": None,
            "tags": ["x"],
            "attributes": '{"watts":40}',
        }
        assert type(record[WRITABLE.index("status") + 1]) is str

    def test_the_seed_writes_every_writable_field(self) -> None:
        assert seed.COLUMNS == (*WRITABLE, "created_at", "updated_at")
        now = datetime.now(UTC)
        fields = seed.fake_fields(random.Random(1), 1, "Lighting", 3, now)
        assert set(fields) <= set(seed.COLUMNS)
        row = seed.fake_product(random.Random(1), 1, "Lighting", 3, now)
        assert len(row) == len(seed.COLUMNS)
        assert row[seed.COLUMNS.index("sku")] == fields["sku"]

    def test_a_field_the_seed_does_not_make_up_gets_the_schema_default(self) -> None:
        assert product_columns.writable_defaults() == {
            "description": "",
            "stock": 0,
            "status": "draft",
            "category_id": None,
            "tags": [],
            "attributes": "{}",
        }

    def test_the_timestamp_format_is_written_once(self) -> None:
        sources = [path.read_text() for path in APP.rglob("*.py")]
        assert sum(source.count("HH24:MI:SS") for source in sources) == 1
