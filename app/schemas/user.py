"""User bodies. Passwords come in as `SecretStr` and never go out."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, EmailStr, Field, SecretStr, model_validator

from app.core.security import Role
from app.schemas.base import ReadSchema, Schema, Timestamp, null_only_for

MIN_PASSWORD_LENGTH = 8
# argon2id hashes any length without truncating; the cap only refuses absurd inputs.
MAX_PASSWORD_LENGTH = 1024

Password = Annotated[
    SecretStr, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
]


class UserCreate(Schema):
    email: EmailStr
    password: Password
    role: Role = Role.viewer


class UserUpdate(Schema):
    model_config = ConfigDict(json_schema_extra=null_only_for())

    email: EmailStr | None = None
    password: Password | None = None
    role: Role | None = None
    is_active: bool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> UserUpdate:
        for field in self.model_fields_set:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.model_fields_set}


class UserRead(ReadSchema):
    id: int
    email: str
    role: Role
    is_active: bool
    created_at: Timestamp
    updated_at: Timestamp
