"""The naive path, for comparison: FastAPI + AsyncSession ORM query + pydantic response model.

This is what a straightforward CRUD service does per read. Run by bench/read_bench.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.models import Product
from app.schemas.base import Page
from app.schemas.product import ProductRead


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(os.environ["BENCH_URL"], pool_size=10, pool_pre_ping=True)
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as s, s.begin():
        yield s


Session = Annotated[AsyncSession, Depends(session)]


@app.get("/products/{product_id}", response_model=ProductRead)
async def one(product_id: int, s: Session) -> Product:
    product = await s.get(Product, product_id)
    if product is None:
        raise HTTPException(404)
    return product


@app.get("/products", response_model=Page[ProductRead])
async def page(s: Session) -> dict[str, object]:
    rows = await s.scalars(
        select(Product)
        .where(Product.deleted_at.is_(None))
        .order_by(Product.created_at.desc(), Product.id.desc())
        .limit(20)
    )
    return {"items": list(rows), "next_cursor": None}
