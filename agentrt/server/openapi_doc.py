"""The API's OpenAPI document: FastAPI's, with the role each operation needs, its
Bearer security, and every error it can answer in the one error shape.

Clients, the isolation tests and the fuzzer read what an operation may answer from
here, so each declares the errors the runtime can raise under it. Any operation
that needs a key may be refused for the key (401, 403, 429), for its input (400,
422), for naming what its tenant lacks (404), for a conflicting write (409) or
because the store does not answer (503): the runtime's errors map to these
wherever they arise. One with a body may find it too large (413); one that takes
``If-Match`` may find the generation moved (412).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from agentrt.server.auth import role_of
from agentrt.server.problems import ErrorBody

__all__ = ["openapi_document"]

_ERRORS = {
    400: "the request cannot be carried out as it is (the message says why)",
    401: "no API key, or one that is unknown or revoked",
    403: "the key's role is below the one this needs",
    404: "nothing of that id or name in the key's tenant",
    409: "it conflicts with the current state (the message says which)",
    412: "If-Match names a generation that is not the current one",
    413: "the request body is over the server's limit",
    422: "a field is missing, unknown or of the wrong type (issues name each)",
    429: "the key's request rate is spent; Retry-After says when to try again",
    503: "the store does not answer now; Retry-After says when to try again",
}
_SCHEMA_REF = {"$ref": "#/components/schemas/ErrorBody"}


def openapi_document(app: FastAPI, routers: Sequence[APIRouter]) -> dict[str, Any]:
    """The OpenAPI document of ``app`` (made once, then kept on the app)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = document.setdefault("components", {})
    components["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "an agentrt API key"}
    }
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # ours answer in ErrorBody
        schemas.pop(name, None)
    schemas.update(_error_schemas())
    for route in (r for router in routers for r in router.routes):
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in route.methods or ():
                operation = document["paths"][route.path_format][method.lower()]
                _describe(operation, role_of(route.dependant))
    app.openapi_schema = document
    return document


def _error_schemas() -> dict[str, Any]:
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    found = schema.pop("$defs", {})
    return {**found, "ErrorBody": schema}


def _describe(operation: dict[str, Any], role: str | None) -> None:
    """Add the role, the security and the error answers of one operation."""
    if role is not None:
        operation["x-agentrt-role"] = role
        operation["security"] = [{"apiKey": []}]
    responses = operation.setdefault("responses", {})
    for status in _statuses(operation, role):
        responses[str(status)] = {
            "description": _ERRORS[status],
            "content": {"application/json": {"schema": _SCHEMA_REF}},
        }


def _statuses(operation: dict[str, Any], role: str | None) -> list[int]:
    """The errors an operation can answer, from what it takes and who may call it."""
    if role is None:  # the health checks declare their own answers
        return []
    params = operation.get("parameters", [])
    body = "requestBody" in operation
    statuses = [400, 401, 403, 404, 409, 429, 503]
    if params or body:
        statuses.append(422)
    if body:
        statuses.append(413)
    if any(p["name"].lower() == "if-match" for p in params):
        statuses.append(412)
    return sorted(statuses)
