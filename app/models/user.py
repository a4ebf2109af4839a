from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin

ROLES = ("viewer", "editor", "admin")


class User(TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES!r}", name="role_known"),
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
    )

    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), server_default="viewer", default="viewer")
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"), default=True)
