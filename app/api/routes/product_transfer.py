"""Bulk transfer of products: import (upsert by SKU) and export, both streamed.

Included before the products router, so `/products/export` is not read as `/products/{id}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api.deps import CurrentUser, Editor
from app.api.routing import api_router, problem_responses
from app.core.errors import NotAcceptable, UnsupportedMediaType
from app.core.logging import get_logger
from app.db.session import transaction
from app.services import exporter, importer
from app.services.exporter import ExportFormat, ExportStream
from app.services.importer import ImportFormat, ImportReport

router = api_router(prefix="/products", tags=["products"])
log = get_logger("app.export")
# Refused before any work when bulk capacity is used up: 429 (the user's share), 503 (all slots).
BULK_REFUSALS = (429, 503)

_EXPORT_RANGES: dict[str, tuple[ExportFormat, ...]] = {
    "application/x-ndjson": (ExportFormat.ndjson,),
    "text/csv": (ExportFormat.csv,),
    "application/*": (ExportFormat.ndjson,),
    "text/*": (ExportFormat.csv,),
    "*/*": (ExportFormat.ndjson, ExportFormat.csv),
}
_SPECIFICITY = {"*/*": 0, "application/*": 1, "text/*": 1}


def import_format(content_type: str | None) -> ImportFormat:
    media_type, _, params = (content_type or "").partition(";")
    fmt = importer.MEDIA_TYPES.get(media_type.strip().lower())
    charset = next(
        (
            value.strip().strip('"').lower()
            for name, _, value in (p.partition("=") for p in params.split(";"))
            if name.strip().lower() == "charset"
        ),
        "utf-8",
    )
    if fmt is None or charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(
            "Send the products as application/x-ndjson or text/csv, in UTF-8"
        )
    return fmt


def export_format(accept: str | None) -> ExportFormat:
    """The format `Accept` prefers (q-values honoured); NDJSON when it does not say."""
    if not accept or not accept.strip():
        return ExportFormat.ndjson
    quality: dict[ExportFormat, tuple[int, float]] = {}  # format -> (specificity, q)
    for media_range in accept.split(","):
        media_type, *params = (part.strip() for part in media_range.split(";"))
        media_type = media_type.lower()
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        specificity = _SPECIFICITY.get(media_type, 2)
        for fmt in _EXPORT_RANGES.get(media_type, ()):
            # The most specific range that matches a format sets its quality.
            if fmt not in quality or specificity > quality[fmt][0]:
                quality[fmt] = (specificity, q)
    acceptable = [(q, fmt is ExportFormat.ndjson, fmt) for fmt, (_, q) in quality.items() if q > 0]
    if not acceptable:
        raise NotAcceptable("The export is available as application/x-ndjson or text/csv")
    return max(acceptable)[2]


class ExportResponse(StreamingResponse):
    """Streams an export, cuts it off at its deadline, and releases it however it ends: at once
    when the client goes away (not whenever the generator is garbage-collected).

    A stream cut off ends without the last chunk of the chunked encoding: the server closes the
    connection, so an HTTP/1.1 client sees an incomplete body (httpx raises RemoteProtocolError,
    curl exits 18), never a shorter export that looks complete. (An HTTP/1.0 client, whose body
    ends with the connection, cannot tell.)
    """

    def __init__(self, stream: ExportStream, *, headers: dict[str, str]) -> None:
        self.chunks = stream.chunks()
        super().__init__(self.chunks, media_type=exporter.MEDIA_TYPES[stream.fmt], headers=headers)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with anyio.CancelScope(deadline=self.stream.deadline) as deadline:
                await super().__call__(scope, receive, send)
        finally:
            await self.chunks.aclose()
            await self.stream.close()
        if deadline.cancelled_caught:
            # Returning without completing the response makes the server close the connection.
            log.warning(
                "export cut off at its deadline",
                sent_bytes=self.stream.sent_bytes,
                user_id=self.stream.lease.user_id,
            )


async def bulk_session(request: Request, user: Editor) -> AsyncIterator[AsyncSession]:
    """The import's transaction, as `get_session`'s, but in one of the user's bulk slots and on
    the bulk pool: taken before the body is read, so a refusal writes nothing."""
    state = request.app.state
    lease = await state.bulk_capacity.acquire(user.id)
    try:
        async with transaction(state.bulk_sessionmaker) as session:
            yield session
    finally:
        lease.release()


BulkSession = Annotated[AsyncSession, Depends(bulk_session, scope="function")]


@router.post(
    "/import",
    response_model=ImportReport,
    responses=problem_responses(403, 409, 413, 415, *BULK_REFUSALS),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_products(session: BulkSession, request: Request) -> ImportReport:
    """Create or update products by SKU from NDJSON or CSV, all valid rows in one transaction."""
    fmt = import_format(request.headers.get("content-type"))
    return await importer.import_products(session, request.stream(), fmt)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        **problem_responses(406, *BULK_REFUSALS),
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}},
    },
)
async def export_products(user: CurrentUser, request: Request) -> StreamingResponse:
    """Stream every live product in id order, as NDJSON or CSV by `Accept`."""
    fmt = export_format(request.headers.get("accept"))
    state = request.app.state
    lease = await state.bulk_capacity.acquire(user.id)
    stream = await ExportStream.open(
        state.bulk_engine,
        lease,
        fmt,
        deadline_seconds=state.settings.bulk_export_deadline_seconds,
    )
    extension = "ndjson" if fmt is ExportFormat.ndjson else "csv"
    return ExportResponse(
        stream, headers={"Content-Disposition": f'attachment; filename="products.{extension}"'}
    )
