"""Every router, in the order the app matches them."""

from fastapi import APIRouter

from app.api.routes import (
    auth,
    categories,
    health,
    product_transfer,
    products,
    stock,
    users,
)

# Each included into the app itself, not through one router gathering them: FastAPI keeps
# included routers nested, and every level is one more match per request.
ROUTERS: tuple[APIRouter, ...] = (
    # Before products: /products/export and /products/import are not /products/{product_id}.
    product_transfer.router,
    products.router,
    stock.router,
    categories.router,
    auth.router,
    users.router,
    health.router,
)
