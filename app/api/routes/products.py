from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response, status

from app.api.deps import (
    Editor,
    IfMatch,
    IfNoneMatch,
    JsonBody,
    ProductId,
    ProductQueriesDep,
    Reader,
    SessionDep,
)
from app.api.etag import etag, if_match_version, none_match
from app.api.idempotency import IdempotencyKey, idempotent
from app.api.routing import (
    ETAG_HEADER,
    LOCATION_HEADER,
    REPLAYED_HEADER,
    api_router,
    problem_responses,
)
from app.schemas.base import Page
from app.schemas.listing import ProductListParams
from app.schemas.product import ProductCreate, ProductRead, ProductUpdate
from app.services.product_queries import ProductFilters
from app.services.products import ProductService

router = api_router(prefix="/products", tags=["products"])

JSON = "application/json"


def _service(session: SessionDep, request: Request) -> ProductService:
    return ProductService(session, require_if_match=request.app.state.settings.require_if_match)


@router.get("", response_model=Page[ProductRead], responses=problem_responses())
async def list_products(
    _: Reader,
    queries: ProductQueriesDep,
    params: Annotated[ProductListParams, Query()],
) -> Response:
    """List products: filter, search, sort, and page with an opaque cursor."""
    body = await queries.page(
        filters=ProductFilters(
            q=params.q,
            category_id=params.category_id,
            status=params.status.value if params.status else None,
            min_price=params.min_price,
            max_price=params.max_price,
            in_stock=params.in_stock,
            tags=params.tag,
        ),
        sort=params.sort,
        limit=params.limit,
        cursor=params.cursor,
    )
    return Response(body, media_type=JSON)


@router.get(
    "/{product_id:id}",
    response_model=ProductRead,
    responses={
        **problem_responses(404),
        200: {"headers": ETAG_HEADER},
        304: {
            "description": "Not modified: the If-None-Match ETag is current",
            "headers": ETAG_HEADER,
        },
    },
)
async def get_product(
    product_id: ProductId,
    _: Reader,
    queries: ProductQueriesDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Get one product; `If-None-Match` with its ETag answers 304."""
    row = await queries.get(product_id)
    headers = {"ETag": etag(row.version)}
    if none_match(if_none_match, row.version):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(row.json, media_type=JSON, headers=headers)


@router.post(
    "",
    response_model=ProductRead,
    status_code=status.HTTP_201_CREATED,
    dependencies=[JsonBody],
    responses={
        **problem_responses(403, 409, 415),
        201: {"headers": {**ETAG_HEADER, **LOCATION_HEADER, **REPLAYED_HEADER}},
    },
)
async def create_product(
    data: ProductCreate,
    user: Editor,
    session: SessionDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Create a product; an `Idempotency-Key` makes a retry replay the first answer."""

    async def create() -> Response:
        product = await _service(session, request).create(data)
        return Response(
            ProductRead.model_validate(product).model_dump_json(),
            status_code=status.HTTP_201_CREATED,
            media_type=JSON,
            headers={"Location": f"/products/{product.id}", "ETag": etag(product.version)},
        )

    return await idempotent(request, session, user, idempotency_key, create)


@router.patch(
    "/{product_id:id}",
    response_model=ProductRead,
    dependencies=[JsonBody],
    responses={**problem_responses(403, 404, 409, 412, 415, 428), 200: {"headers": ETAG_HEADER}},
)
async def update_product(
    product_id: ProductId,
    changes: ProductUpdate,
    _: Editor,
    session: SessionDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> ProductRead:
    """Change some fields of a product; `If-Match` guards against lost updates."""
    product = await _service(session, request).update(
        product_id, changes, expected_version=if_match_version(if_match)
    )
    response.headers["ETag"] = etag(product.version)
    return ProductRead.model_validate(product)


@router.delete(
    "/{product_id:id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(403, 404, 412, 428),
)
async def delete_product(
    product_id: ProductId,
    _: Editor,
    session: SessionDep,
    request: Request,
    if_match: IfMatch = None,
) -> Response:
    """Delete a product (soft: its SKU is free again)."""
    await _service(session, request).delete(product_id, expected_version=if_match_version(if_match))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
