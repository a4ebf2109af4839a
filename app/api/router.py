"""Every router, gathered in one place."""

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

api_router = APIRouter()
api_router.include_router(health.router)
# Before products: /products/export and /products/import are not /products/{product_id}.
api_router.include_router(product_transfer.router)
api_router.include_router(products.router)
api_router.include_router(stock.router)
api_router.include_router(categories.router)
api_router.include_router(auth.router)
api_router.include_router(users.router)
