"""Request bodies for tests: valid by default, overridable per field."""

from __future__ import annotations

import itertools
from typing import Any

_numbers = itertools.count(1)


def product_data(**overrides: Any) -> dict[str, Any]:
    number = next(_numbers)
    data: dict[str, Any] = {
        "sku": f"SKU-{number:06d}",
        "name": f"Test product {number}",
        "description": "A product made for tests.",
        "price": "19.99",
        "currency": "eur",
        "stock": 10,
        "status": "active",
        "tags": ["Sale", "new", "sale"],
        "attributes": {"color": "red", "weight_g": 250, "fragile": False},
    }
    data.update(overrides)
    return data


def category_data(**overrides: Any) -> dict[str, Any]:
    number = next(_numbers)
    data: dict[str, Any] = {"slug": f"category-{number}", "name": f"Category {number}"}
    data.update(overrides)
    return data
