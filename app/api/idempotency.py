"""`Idempotency-Key` for POST routes: run the work once per key, replay its response after.

A route hands its work to `idempotent` as a coroutine function that returns the Response:

    return await idempotent(request, session, user, key, work)

Without a key the work just runs. With one, the key is claimed in the request's transaction
(see app.services.idempotency), the work runs inside a SAVEPOINT, and its response is stored
on the key before the transaction commits. A domain error below 500 is an outcome too: its
work is rolled back to the savepoint, but the problem response is stored and the transaction
commits, so a retry gets the same 4xx. Anything else (a 5xx, a 428, a bug, a failed commit)
rolls the whole transaction back, key included, so the retry runs the work afresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.problems import domain_problem
from app.core.errors import DomainError, PreconditionRequired
from app.services.idempotency import IdempotencyService, StoredResponse, fingerprint
from app.services.principals import Principal

REPLAYED_HEADER = "Idempotent-Replayed"
# Recomputed on replay; the request id belongs to the retry, and is added by the middleware.
_NOT_STORED = frozenset({"content-length", "x-request-id"})
# A missing If-Match is a malformed request, like a validation error: the client fixes the
# request and retries with the same key, so it must not be replayed.
_NOT_AN_OUTCOME = (PreconditionRequired,)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="any unique printable ASCII string (a UUID, say); a retry with the same "
        "key and body replays the first response",
    ),
]


def _replay(stored: StoredResponse) -> Response:
    return Response(
        stored.body.encode(),
        status_code=stored.status,
        headers={**stored.headers, REPLAYED_HEADER: "true"},
    )


async def idempotent(
    request: Request,
    session: AsyncSession,
    user: Principal,
    key: str | None,
    work: Callable[[], Awaitable[Response]],
) -> Response:
    """Run `work` once per (user, key); replay its stored response on a retry."""
    if key is None:
        return await work()
    service = IdempotencyService(
        session, ttl_seconds=request.app.state.settings.idempotency_ttl_seconds
    )
    stored = await service.claim(
        user_id=user.id,
        key=key,
        fingerprint=fingerprint(request.method, request.url.path, await request.body()),
    )
    if stored is not None:
        return _replay(stored)
    try:
        async with session.begin_nested():
            response = await work()
    except DomainError as error:
        if error.status >= 500 or isinstance(error, _NOT_AN_OUTCOME):
            raise
        response = domain_problem(request, error)
    await service.record(
        user_id=user.id,
        key=key,
        response=StoredResponse(
            status=response.status_code,
            body=bytes(response.body).decode(),
            headers={k: v for k, v in response.headers.items() if k not in _NOT_STORED},
        ),
    )
    return response
