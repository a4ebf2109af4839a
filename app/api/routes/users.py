from __future__ import annotations

from typing import Annotated

from fastapi import BackgroundTasks, Query, Request, Response, status

from app.api.deps import Admin, CurrentUser, JsonBody, PrincipalsDep, SessionDep, UserId
from app.api.routing import LOCATION_HEADER, api_router, problem_responses
from app.schemas.base import Page
from app.schemas.listing import PageParams
from app.schemas.user import UserCreate, UserRead, UserUpdate
from app.services.principals import PrincipalCache
from app.services.users import UserService

router = api_router(prefix="/users", tags=["users"])


def _forget(principals: PrincipalCache, user_id: int, background: BackgroundTasks) -> None:
    """Stop honouring the user's access tokens in this process at once.

    Invalidated now and again once the transaction has committed: a request racing between
    the two could otherwise cache the old row for the cache's lifetime.
    """
    principals.invalidate(user_id)
    background.add_task(principals.invalidate, user_id)


@router.get("/me", response_model=UserRead, responses=problem_responses())
async def read_me(user: CurrentUser, session: SessionDep) -> UserRead:
    """The caller's own account."""
    return UserRead.model_validate(await UserService(session).get(user.id))


@router.get("", response_model=Page[UserRead], responses=problem_responses(403))
async def list_users(
    _: Admin, session: SessionDep, params: Annotated[PageParams, Query()], request: Request
) -> Page[UserRead]:
    """List users by id, one page at a time."""
    users, next_cursor = await UserService(session).list(
        request.app.state.cursor_codec, limit=params.limit, cursor=params.cursor
    )
    return Page(items=[UserRead.model_validate(u) for u in users], next_cursor=next_cursor)


@router.post(
    "",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
    dependencies=[JsonBody],
    responses={**problem_responses(403, 409, 415), 201: {"headers": LOCATION_HEADER}},
)
async def create_user(
    data: UserCreate, _: Admin, session: SessionDep, response: Response
) -> UserRead:
    """Create a user with an email, a password and a role."""
    user = await UserService(session).create(data)
    response.headers["Location"] = f"/users/{user.id}"
    return UserRead.model_validate(user)


@router.get("/{user_id:id}", response_model=UserRead, responses=problem_responses(403, 404))
async def get_user(user_id: UserId, _: Admin, session: SessionDep) -> UserRead:
    """Get one user."""
    return UserRead.model_validate(await UserService(session).get(user_id))


@router.patch(
    "/{user_id:id}",
    response_model=UserRead,
    dependencies=[JsonBody],
    responses=problem_responses(403, 404, 409, 415),
)
async def update_user(
    user_id: UserId,
    changes: UserUpdate,
    admin: Admin,
    session: SessionDep,
    principals: PrincipalsDep,
    background: BackgroundTasks,
) -> UserRead:
    """Change email, password, role or is_active; demoting or deactivating yourself is 409."""
    user = await UserService(session).update(user_id, changes, actor_id=admin.id)
    _forget(principals, user_id, background)
    return UserRead.model_validate(user)


@router.delete(
    "/{user_id:id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(403, 404, 409),
)
async def delete_user(
    user_id: UserId,
    admin: Admin,
    session: SessionDep,
    principals: PrincipalsDep,
    background: BackgroundTasks,
) -> Response:
    """Delete a user and their sessions; deleting yourself is 409."""
    await UserService(session).delete(user_id, actor_id=admin.id)
    _forget(principals, user_id, background)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
