"""Shared schema pieces: the base model, the page envelope, and text types PostgreSQL can store."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and UTF-8 cannot encode a lone surrogate.
    if _UNSTORABLE.search(value):
        raise ValueError("text must not contain NUL characters or unpaired surrogates")
    return value


class _Storable(AfterValidator):
    """The check, and in JSON Schema the pattern that says it (no NUL; JSON Schema generators
    make no lone surrogates)."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault("pattern", "^[^\\u0000]*$")
        return json_schema


# Put after any StringConstraints: Annotated[str, StringConstraints(...), Storable].
Storable = _Storable(_storable)
StorableStr = Annotated[str, Storable]


def _not_bool(value: object) -> object:
    # JSON `true` is not the integer 1, which pydantic's lax mode would make of it.
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


# For integers in bodies: the document says integer, so a boolean is refused.
NotBool = BeforeValidator(_not_bool)


DbId = Annotated[int, Field(ge=1, le=MAX_BIGINT), NotBool]


class Schema(BaseModel):
    """What comes in (and what goes out, built from values): a JSON object, unknown fields
    refused.

    FastAPI validates a body with `from_attributes=True`, which takes any object for one whose
    fields are all missing: a body that is a JSON number (a Decimal here) was an empty update.
    So anything but an object (a dict, or an instance) is refused first.
    """

    model_config = ConfigDict(extra="forbid")
    _reads_attributes: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        if cls._reads_attributes or isinstance(data, dict | BaseModel):
            return data
        raise PydanticCustomError("model_type", "Input should be a JSON object")


class ReadSchema(Schema):
    """What goes out, read from a model's attributes (an ORM object)."""

    model_config = ConfigDict(from_attributes=True)
    _reads_attributes: ClassVar[bool] = True


def null_only_for(*nullable: str) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra` of a partial update: a field left out is unchanged, and null is
    refused except for `nullable` fields, so the document shows no null for the others.
    (`X | None` keeps pydantic's error locations plain; the schema is corrected here.)"""

    def drop_null(schema: dict[str, Any]) -> None:
        for name, prop in schema.get("properties", {}).items():
            branches = prop.get("anyOf", [])
            if name in nullable or {"type": "null"} not in branches:
                continue
            rest = [branch for branch in branches if branch != {"type": "null"}]
            del prop["anyOf"]
            if len(rest) == 1:
                prop.update(rest[0])
            else:
                prop["anyOf"] = rest

    return drop_null


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """Every list answers this envelope; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Always UTC, always microseconds: the same text PostgreSQL's to_char renders on the read path.
Timestamp = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str, when_used="json")]
