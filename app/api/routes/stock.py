from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from app.api.deps import Editor, IfMatch, JsonBody, ProductId, Reader, SessionDep
from app.api.etag import etag, if_match_version
from app.api.idempotency import IdempotencyKey, idempotent
from app.api.routing import ETAG_HEADER, REPLAYED_HEADER, api_router, problem_responses
from app.schemas.base import Page
from app.schemas.listing import PageParams
from app.schemas.product import ProductRead
from app.schemas.stock import StockAdjust, StockAdjustmentRead
from app.services.stock import StockService

router = api_router(prefix="/products", tags=["stock"])


def _service(session: SessionDep, request: Request) -> StockService:
    return StockService(session, require_if_match=request.app.state.settings.require_if_match)


@router.post(
    "/{product_id:id}/stock",
    response_model=ProductRead,
    dependencies=[JsonBody],
    responses={
        **problem_responses(403, 404, 409, 412, 415, 428),
        200: {"headers": {**ETAG_HEADER, **REPLAYED_HEADER}},
    },
)
async def adjust_stock(
    product_id: ProductId,
    data: StockAdjust,
    user: Editor,
    session: SessionDep,
    request: Request,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Add to or take from a product's stock, atomically; stock never goes below 0 (409)."""

    async def adjust() -> Response:
        row = await _service(session, request).adjust(
            product_id, data, user_id=user.id, expected_version=if_match_version(if_match)
        )
        return Response(
            row.json, media_type="application/json", headers={"ETag": etag(row.version)}
        )

    return await idempotent(request, session, user, idempotency_key, adjust)


@router.get(
    "/{product_id:id}/stock/history",
    response_model=Page[StockAdjustmentRead],
    responses=problem_responses(404),
)
async def stock_history(
    product_id: ProductId,
    _: Reader,
    session: SessionDep,
    params: Annotated[PageParams, Query()],
    request: Request,
) -> Page[StockAdjustmentRead]:
    """List a product's stock adjustments, newest first: who, how much, why, when."""
    entries, next_cursor = await _service(session, request).history(
        product_id, request.app.state.cursor_codec, limit=params.limit, cursor=params.cursor
    )
    return Page(
        items=[StockAdjustmentRead.model_validate(e) for e in entries], next_cursor=next_cursor
    )
