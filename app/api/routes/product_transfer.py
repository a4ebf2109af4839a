"""Bulk transfer of products: import (upsert by SKU) and export, both streamed.

Included before the products router, so `/products/export` is not read as `/products/{id}`.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api.deps import CurrentUser, Editor, SessionDep
from app.api.routing import api_router, problem_responses
from app.core.errors import NotAcceptable, UnsupportedMediaType
from app.services import exporter, importer
from app.services.exporter import ExportFormat
from app.services.importer import ImportFormat, ImportReport

router = api_router(prefix="/products", tags=["products"])

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


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body iterator however the response ends, so a stream's connection is released
    at once when the client goes away (not whenever the generator is garbage-collected)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


@router.post(
    "/import",
    response_model=ImportReport,
    responses=problem_responses(403, 409, 413, 415),
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
async def import_products(_: Editor, session: SessionDep, request: Request) -> ImportReport:
    """Create or update products by SKU from NDJSON or CSV, all valid rows in one transaction."""
    fmt = import_format(request.headers.get("content-type"))
    return await importer.import_products(session, request.stream(), fmt)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        **problem_responses(406),
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}},
    },
)
async def export_products(_: CurrentUser, request: Request) -> StreamingResponse:
    """Stream every live product in id order, as NDJSON or CSV by `Accept`."""
    fmt = export_format(request.headers.get("accept"))
    extension = "ndjson" if fmt is ExportFormat.ndjson else "csv"
    return ClosingStreamingResponse(
        exporter.stream_export(request.app.state.engine, fmt),
        media_type=exporter.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="products.{extension}"'},
    )
