"""Realistic demo data: a category tree and products with varied names, prices and tags.

Rows go in through COPY in batches, so a million products take minutes, not hours.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from app.db.bootstrap import asyncpg_dsn
from app.services.product_columns import WRITABLE, writable_defaults

CATEGORY_TREE: dict[str, list[str]] = {
    "Electronics": ["Phones", "Laptops", "Audio", "Cameras", "Accessories"],
    "Home & Kitchen": ["Cookware", "Furniture", "Lighting", "Storage"],
    "Sports & Outdoors": ["Cycling", "Camping", "Running", "Fitness"],
    "Fashion": ["Shoes", "Bags", "Watches", "Outerwear"],
    "Garden": ["Tools", "Plants", "Watering"],
    "Toys & Games": ["Board Games", "Puzzles", "Building Sets"],
}
BRANDS = [
    "Acme",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Hooli",
    "Vandelay",
    "Aperture",
]
ADJECTIVES = [
    "Compact",
    "Ultra",
    "Classic",
    "Pro",
    "Eco",
    "Smart",
    "Wireless",
    "Rugged",
    "Deluxe",
    "Lightweight",
    "Vintage",
    "Modular",
    "Premium",
    "Portable",
    "Silent",
]
MATERIALS = [
    "Steel",
    "Bamboo",
    "Leather",
    "Aluminium",
    "Cotton",
    "Ceramic",
    "Carbon",
    "Oak",
    "Glass",
    "Wool",
    "Titanium",
    "Linen",
]
NOUNS = {
    "Phones": ["Smartphone", "Phone Case", "Charger"],
    "Laptops": ["Laptop", "Laptop Sleeve", "Docking Station"],
    "Audio": ["Headphones", "Speaker", "Earbuds"],
    "Cameras": ["Camera", "Tripod", "Lens"],
    "Accessories": ["Cable", "Power Bank", "Stylus"],
    "Cookware": ["Skillet", "Saucepan", "Knife Set"],
    "Furniture": ["Desk", "Chair", "Bookshelf"],
    "Lighting": ["Lamp", "Pendant Light", "LED Strip"],
    "Storage": ["Box", "Shelf", "Basket"],
    "Cycling": ["Bike Helmet", "Bike Light", "Saddle"],
    "Camping": ["Tent", "Sleeping Bag", "Stove"],
    "Running": ["Running Shoe", "Running Vest", "Water Bottle"],
    "Fitness": ["Yoga Mat", "Kettlebell", "Resistance Band"],
    "Shoes": ["Sneaker", "Boot", "Sandal"],
    "Bags": ["Backpack", "Tote", "Duffel"],
    "Watches": ["Watch", "Watch Strap"],
    "Outerwear": ["Jacket", "Raincoat", "Parka"],
    "Tools": ["Spade", "Pruner", "Rake"],
    "Plants": ["Planter", "Seed Kit"],
    "Watering": ["Hose", "Watering Can", "Sprinkler"],
    "Board Games": ["Board Game", "Card Game"],
    "Puzzles": ["Jigsaw Puzzle", "Puzzle Cube"],
    "Building Sets": ["Building Set", "Model Kit"],
}
COLORS = ["black", "white", "red", "blue", "green", "grey", "navy", "olive", "sand"]
TAGS = [
    "new",
    "sale",
    "bestseller",
    "eco",
    "gift",
    "limited",
    "outdoor",
    "premium",
    "budget",
    "handmade",
    "waterproof",
    "wireless",
    "kids",
    "travel",
]
SENTENCES = [
    "Built to last with {material} and careful finishing.",
    "A {adjective} design that fits everyday life.",
    "Tested by our team over months of daily use.",
    "Ships in recyclable packaging.",
    "Backed by a two-year warranty from {brand}.",
    "Pairs well with the rest of the {category} range.",
    "Easy to clean and simple to store.",
    "Available in several colours; this one is {color}.",
]
BATCH = 10_000
COLUMNS = (*WRITABLE, "created_at", "updated_at")
# A field the demo data does not make up gets the schema's default.
_DEFAULTS = writable_defaults()


async def _ensure_categories(connection: asyncpg.Connection) -> dict[str, int]:
    ids: dict[str, int] = {}
    for parent, children in CATEGORY_TREE.items():
        parent_id = await _upsert_category(connection, parent, None)
        for child in children:
            ids[child] = await _upsert_category(connection, child, parent_id)
    return ids


async def _upsert_category(connection: asyncpg.Connection, name: str, parent: int | None) -> int:
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).replace("--", "-").strip("-")
    category_id: int = await connection.fetchval(
        "INSERT INTO categories (slug, name, description, parent_id) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        slug,
        name,
        f"Everything in {name.lower()}.",
        parent,
    )
    return category_id


def fake_fields(
    rng: random.Random, number: int, category: str, category_id: int, now: datetime
) -> dict[str, object]:
    """A demo product's made-up fields, in the form COPY takes them."""
    brand = rng.choice(BRANDS)
    adjective, material, color = rng.choice(ADJECTIVES), rng.choice(MATERIALS), rng.choice(COLORS)
    noun = rng.choice(NOUNS[category])
    words = {
        "material": material.lower(),
        "adjective": adjective.lower(),
        "brand": brand,
        "category": category.lower(),
        "color": color,
    }
    description = " ".join(s.format(**words) for s in rng.sample(SENTENCES, rng.randint(2, 5)))
    price = Decimal(round(rng.lognormvariate(3.5, 1.0), 2)).quantize(Decimal("0.01"))
    created = now - timedelta(seconds=rng.randint(0, 365 * 86_400))
    attributes = {"color": color, "brand": brand, "weight_g": rng.randint(50, 15_000)}
    if rng.random() < 0.3:
        attributes["size"] = rng.choice(["XS", "S", "M", "L", "XL"])
    return {
        "sku": f"{brand[:3].upper()}-{number:08d}",
        "name": f"{brand} {adjective} {material} {noun}",
        "description": description,
        "price": min(price, Decimal("99999.99")),
        "currency": rng.choices(["EUR", "USD", "GBP"], weights=[6, 3, 1])[0],
        "stock": rng.choice([0, 0, *range(1, 500)]),
        "status": rng.choices(["active", "draft", "archived"], weights=[85, 10, 5])[0],
        "category_id": category_id,
        "tags": rng.sample(TAGS, rng.randint(0, 4)),
        "attributes": json.dumps(attributes),
        "created_at": created,
        "updated_at": created,
    }


def fake_product(
    rng: random.Random, number: int, category: str, category_id: int, now: datetime
) -> tuple[object, ...]:
    """A demo product as a COPY record in COLUMNS order."""
    fields = _DEFAULTS | fake_fields(rng, number, category, category_id, now)
    return tuple(fields[column] for column in COLUMNS)


async def seed_catalog(database_url: str, count: int, random_seed: int = 42) -> int:
    rng = random.Random(random_seed)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        categories = await _ensure_categories(connection)
        names = list(categories)
        start = await connection.fetchval("SELECT coalesce(max(id), 0) FROM products")
        now = datetime.now(UTC)
        for offset in range(0, count, BATCH):
            rows = []
            for number in range(offset, min(offset + BATCH, count)):
                category = rng.choice(names)
                rows.append(
                    fake_product(rng, start + number + 1, category, categories[category], now)
                )
            await connection.copy_records_to_table("products", records=rows, columns=COLUMNS)
        await connection.execute("ANALYZE products")
        return count
    finally:
        await connection.close()
