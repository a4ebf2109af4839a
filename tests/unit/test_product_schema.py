from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from app.schemas.product import ProductCreate, ProductRead, ProductUpdate

BASE = {"sku": "A-1", "name": "Thing", "price": "1", "currency": "usd"}


def create(**overrides: object) -> ProductCreate:
    return ProductCreate.model_validate({**BASE, **overrides})


class TestPrice:
    @pytest.mark.parametrize(
        ("given", "stored"),
        [
            ("19.99", "19.99"),
            ("5", "5.00"),
            (Decimal("0.1"), "0.10"),
            (7, "7.00"),
            ("9999999999.99", "9999999999.99"),
        ],
    )
    def test_accepted_and_quantised(self, given: object, stored: str) -> None:
        assert str(create(price=given).price) == stored

    @pytest.mark.parametrize("given", [19.99, True, "1e400", "-0.01", "0.001", "10000000000"])
    def test_refused(self, given: object) -> None:
        with pytest.raises(ValidationError):
            create(price=given)

    def test_serialised_as_string(self) -> None:
        assert create(price="3.5").model_dump(mode="json")["price"] == "3.50"


class TestNormalisation:
    def test_tags_lowercased_and_deduplicated_in_order(self) -> None:
        assert create(tags=["B", "a", "b", " A "]).tags == ["b", "a"]

    def test_currency_upper_and_name_trimmed(self) -> None:
        product = create(currency="eur", name="  Mug  ")
        assert (product.currency, product.name) == ("EUR", "Mug")

    def test_twenty_distinct_tags_after_dedup_is_fine(self) -> None:
        assert len(create(tags=[f"t{i % 20}" for i in range(40)]).tags) == 20

    def test_attribute_decimal_becomes_number(self) -> None:
        product = create(attributes={"w": Decimal("1.5"), "n": Decimal("2")})
        assert product.attributes == {"w": 1.5, "n": 2}
        assert isinstance(product.attributes["n"], int)

    @pytest.mark.parametrize(
        "attributes",
        [{str(i): i for i in range(51)}, {"x": [1]}, {"x": None}, {"": 1}, {"x": float("nan")}],
    )
    def test_bad_attributes_refused(self, attributes: dict[str, object]) -> None:
        with pytest.raises(ValidationError):
            create(attributes=attributes)


class TestUpdate:
    def test_only_sent_fields_are_changes(self) -> None:
        assert ProductUpdate.model_validate({"stock": 3}).changes() == {"stock": 3}

    def test_null_allowed_only_for_category(self) -> None:
        assert ProductUpdate.model_validate({"category_id": None}).changes() == {
            "category_id": None
        }
        with pytest.raises(ValidationError, match="price cannot be null"):
            ProductUpdate.model_validate({"price": None})


def test_read_schema_renders_timestamps_with_microseconds_and_z() -> None:
    from datetime import UTC, datetime

    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    product = ProductRead.model_validate(
        {
            **BASE,
            "id": 1,
            "description": "",
            "stock": 0,
            "status": "draft",
            "category_id": None,
            "tags": [],
            "attributes": {},
            "version": 1,
            "created_at": stamp,
            "updated_at": stamp,
        }
    )
    assert product.model_dump(mode="json")["created_at"] == "2026-01-02T03:04:05.000000Z"
