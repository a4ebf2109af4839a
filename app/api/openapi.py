"""The OpenAPI document, completed with what every route answers besides its own responses.

Routes declare their own errors (`problem_responses`); what the middleware and FastAPI's
request validation add to every operation is filled in here, in one pass over the document
FastAPI builds: 422 with `errors[]` wherever there is input to validate, 400 (malformed body)
and 413 (body too large) wherever there is a body, the `X-Request-ID` every response carries,
and the problem schemas under `application/problem+json`, the only media type errors have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from app.api.routing import problem_response_doc
from app.schemas.base import MAX_BIGINT
from app.schemas.problem import Problem, ValidationProblem

REQUEST_ID = "X-Request-ID"
_REQUEST_ID_PARAMETER = {
    "name": REQUEST_ID,
    "in": "header",
    "required": False,
    # Not a constraint: another value is replaced, not refused.
    "description": "kept when it is 1-128 characters of `[A-Za-z0-9._-]`, else one is generated; "
    "the same id is in the response and in the log lines of the request",
    "schema": {"type": "string"},
}
_REQUEST_ID_HEADER = {
    "description": "the request's id (the one sent, when valid)",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
}
# FastAPI's own 422 body, which this service never sends.
_UNUSED_SCHEMAS = ("HTTPValidationError", "ValidationError")
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _problem_schemas() -> dict[str, Any]:
    _, schema = models_json_schema(
        [(Problem, "serialization"), (ValidationProblem, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    definitions: dict[str, Any] = schema["$defs"]
    return definitions


def _not_null(parameter: dict[str, Any]) -> None:
    """An optional query or header parameter is absent, never null: HTTP has no null, and
    `If-Match: null` is a string the pattern refuses. FastAPI writes `str | None` as anyOf."""
    schema = parameter.get("schema", {})
    branches = [branch for branch in schema.get("anyOf", ()) if branch != {"type": "null"}]
    if len(branches) == 1 and len(schema["anyOf"]) == 2:
        del schema["anyOf"]
        schema.update(branches[0])


def _complete_operation(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", ()):
        _not_null(parameter)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    has_body = "requestBody" in operation
    if has_body:
        for status in (400, 413):
            responses.setdefault(str(status), problem_response_doc(status))
    if has_body or operation.get("parameters"):
        # Replaces FastAPI's HTTPValidationError: the service answers its own 422 body.
        responses["422"] = problem_response_doc(422)
    for response in responses.values():
        response.setdefault("headers", {})[REQUEST_ID] = _REQUEST_ID_HEADER
    operation["responses"] = dict(sorted(responses.items()))
    operation.setdefault("parameters", []).append(_REQUEST_ID_PARAMETER)


def _exact_bounds(node: Any) -> None:
    """Integer bounds as integers. FastAPI's OpenAPI model holds minimum and maximum as floats,
    and the float of 2**63 - 1 (a bigint id's maximum) is 2**63: a tool that believes it sends
    an id no bigint holds, and calls the 422 a bug."""
    if isinstance(node, list):
        for item in node:
            _exact_bounds(item)
    elif isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum"):
                bound = node.get(key)
                if isinstance(bound, float) and bound.is_integer():
                    node[key] = max(-MAX_BIGINT, min(MAX_BIGINT, int(bound)))
        for value in node.values():
            _exact_bounds(value)


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Fill in `document` (as FastAPI built it) in place, and return it."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _UNUSED_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(_problem_schemas())
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    _exact_bounds(document)
    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            if method in _METHODS:
                _complete_operation(operation)
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
