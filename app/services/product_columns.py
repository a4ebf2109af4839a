"""One definition of a product's fields, for the SQL that reads and writes them in bulk.

The model (app.models.product) and the schemas (app.schemas.product) are the definition: the
fields of `ProductRead` are what a client reads, those of `ProductCreate` what a client writes,
and the table's column types say how each travels. From them come the JSON PostgreSQL builds
for a read, the export's CSV columns, the import's staging table and COPY columns and the
seed's, so that adding a field is a change to the model, a migration and the schemas only.
tests/unit/test_product_columns.py fails when the schemas and the table disagree.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from enum import Enum
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import Column, DateTime, Float, Numeric, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from app.models.product import Product
from app.schemas.product import ProductCreate, ProductRead

TABLE: Table = Product.__table__  # type: ignore[assignment]
# Columns no client reads, deliberately: a deleted product is gone, and the search vector is
# the input of an index.
HIDDEN = frozenset({"deleted_at", "search"})
READ: tuple[str, ...] = tuple(ProductRead.model_fields)
WRITABLE: tuple[str, ...] = tuple(ProductCreate.model_fields)
READ_ONLY: tuple[str, ...] = tuple(name for name in READ if name not in WRITABLE)
# RFC 3339 with microseconds and Z, as app.schemas.base.Timestamp serializes a datetime.
RFC3339 = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
# json_build_object takes at most 100 arguments (PostgreSQL's FUNC_MAX_ARGS): 50 fields.
MAX_JSON_FIELDS = 50


def mismatches(
    table: Table,
    read: type[BaseModel],
    create: type[BaseModel],
    hidden: frozenset[str] = HIDDEN,
) -> list[str]:
    """What keeps `table` and the schemas from being one definition; empty when they agree."""
    columns = set(table.columns.keys())
    read_fields, create_fields = set(read.model_fields), set(create.model_fields)
    problems = [f"{name} is read but is no column" for name in sorted(read_fields - columns)]
    problems += [f"{name} is written but is no column" for name in sorted(create_fields - columns)]
    problems += [f"{name} is written, never read" for name in sorted(create_fields - read_fields)]
    problems += [
        f"column {name} is neither read nor hidden"
        for name in sorted(columns - read_fields - hidden)
    ]
    problems += [f"hidden column {name} is read" for name in sorted(hidden & read_fields)]
    if len(read_fields) > MAX_JSON_FIELDS:
        problems.append(f"more than {MAX_JSON_FIELDS} fields do not fit one json_build_object")
    return problems


def _column(name: str) -> Column[Any]:
    return TABLE.columns[name]


def _sql_value(name: str, alias: str, *, jsonb_as_text: bool) -> str:
    """The SQL for column `name` as a client reads it: exact decimals and RFC 3339 as text."""
    kind = _column(name).type
    reference = f"{alias}.{name}"
    if isinstance(kind, DateTime):
        return f"to_char({reference} AT TIME ZONE 'UTC', '{RFC3339}')"
    if isinstance(kind, Numeric) and not isinstance(kind, Float):
        return f"{reference}::text"  # every digit, as the schemas' Price serializes it
    if jsonb_as_text and isinstance(kind, JSONB):
        return f"{reference}::text"
    return reference


def json_object(alias: str) -> str:
    """SQL rendering a product as the text of `ProductRead`'s JSON, fields in its order."""
    pairs = ", ".join(f"'{name}', {_sql_value(name, alias, jsonb_as_text=False)}" for name in READ)
    return f"json_build_object({pairs})::text"


PRODUCT_JSON = json_object("p")
# The export's CSV: the read fields in order; JSONB as its text, arrays left to Python.
CSV_COLUMNS: tuple[str, ...] = READ
CSV_SELECT = ", ".join(_sql_value(name, "p", jsonb_as_text=True) for name in READ)


def column_definitions(names: tuple[str, ...]) -> list[str]:
    """`name TYPE [NOT NULL]` for each column, with the table's own types."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    definitions = []
    for name in names:
        column = _column(name)
        null = "" if column.nullable else " NOT NULL"
        definitions.append(f"{name} {column.type.compile(dialect=dialect)}{null}")
    return definitions


def _copy_conversion(name: str) -> Callable[[Any], Any] | None:
    """How COPY takes a writable value pydantic holds in another form, if it does."""
    if isinstance(_column(name).type, JSONB):
        return lambda value: orjson.dumps(value).decode()
    annotation = ProductCreate.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return operator.attrgetter("value")
    return None


_CONVERSIONS = {name: _copy_conversion(name) for name in WRITABLE}
_CONVERTERS = tuple(
    (position, convert)
    for position, convert in enumerate(_CONVERSIONS.values())
    if convert is not None
)
_WRITABLE_VALUES = operator.attrgetter(*WRITABLE)


def copy_value(name: str, value: Any) -> Any:
    """Writable field `name`'s value as COPY takes it."""
    convert = _CONVERSIONS[name]
    return value if convert is None else convert(value)


def copy_values(product: ProductCreate) -> list[Any]:
    """A validated product's writable values, in WRITABLE order, as COPY takes them."""
    values = list(_WRITABLE_VALUES(product))
    for position, convert in _CONVERTERS:
        values[position] = convert(values[position])
    return values


def writable_defaults() -> dict[str, Any]:
    """The schema's default of every optional writable field, as COPY takes it."""
    fields = ProductCreate.model_fields
    return {
        name: copy_value(name, fields[name].get_default(call_default_factory=True))
        for name in WRITABLE
        if not fields[name].is_required()
    }
