from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response, status

from app.api.deps import CategoryId, Editor, JsonBody, Reader, SessionDep
from app.api.routing import LOCATION_HEADER, api_router, problem_responses
from app.schemas.base import Page
from app.schemas.category import CategoryCreate, CategoryRead, CategoryUpdate
from app.schemas.listing import PageParams
from app.services.categories import CategoryService

router = api_router(prefix="/categories", tags=["categories"])


@router.get("", response_model=Page[CategoryRead], responses=problem_responses())
async def list_categories(
    _: Reader, session: SessionDep, params: Annotated[PageParams, Query()], request: Request
) -> Page[CategoryRead]:
    """List categories by id, one page at a time."""
    categories, next_cursor = await CategoryService(session).list(
        request.app.state.cursor_codec, limit=params.limit, cursor=params.cursor
    )
    return Page(items=[CategoryRead.model_validate(c) for c in categories], next_cursor=next_cursor)


@router.get("/{category_id:id}", response_model=CategoryRead, responses=problem_responses(404))
async def get_category(category_id: CategoryId, _: Reader, session: SessionDep) -> CategoryRead:
    """Get one category."""
    return CategoryRead.model_validate(await CategoryService(session).get(category_id))


@router.post(
    "",
    response_model=CategoryRead,
    status_code=status.HTTP_201_CREATED,
    dependencies=[JsonBody],
    responses={**problem_responses(403, 409, 415), 201: {"headers": LOCATION_HEADER}},
)
async def create_category(
    data: CategoryCreate, _: Editor, session: SessionDep, response: Response
) -> CategoryRead:
    """Create a category, optionally under a parent."""
    category = await CategoryService(session).create(data)
    response.headers["Location"] = f"/categories/{category.id}"
    return CategoryRead.model_validate(category)


@router.patch(
    "/{category_id:id}",
    response_model=CategoryRead,
    dependencies=[JsonBody],
    responses=problem_responses(403, 404, 409, 415),
)
async def update_category(
    category_id: CategoryId, changes: CategoryUpdate, _: Editor, session: SessionDep
) -> CategoryRead:
    """Rename or move a category; a move that would make a cycle is refused."""
    return CategoryRead.model_validate(await CategoryService(session).update(category_id, changes))


@router.delete(
    "/{category_id:id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(403, 404, 409),
)
async def delete_category(category_id: CategoryId, _: Editor, session: SessionDep) -> Response:
    """Delete a category that has no products and no subcategories."""
    await CategoryService(session).delete(category_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
