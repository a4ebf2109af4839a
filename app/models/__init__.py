"""SQLAlchemy models. Importing this package registers every table on `Base.metadata`."""

from app.models.base import Base, TimestampMixin
from app.models.category import Category
from app.models.idempotency import IdempotencyKey
from app.models.product import Product
from app.models.refresh_token import RefreshToken
from app.models.stock import StockAdjustment
from app.models.user import User

__all__ = [
    "Base",
    "Category",
    "IdempotencyKey",
    "Product",
    "RefreshToken",
    "StockAdjustment",
    "TimestampMixin",
    "User",
]
