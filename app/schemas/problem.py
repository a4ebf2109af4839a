"""The problem details (RFC 9457) every error response carries, as the OpenAPI document says."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemError(BaseModel):
    loc: list[str | int] = Field(description="where: body, query, header or path, then the field")
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    # Some problems carry more members (readiness: `checks`); RFC 9457 allows extensions.
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`about:blank` or `/problems/<slug>`")
    title: str
    status: int
    detail: str
    instance: str = Field(description="the request path")
    request_id: str = Field(description="the X-Request-ID of the request")


class ValidationProblem(Problem):
    """A 422: the problem, and what failed where."""

    errors: list[ProblemError]
