"""How the API says what went wrong: one JSON shape for every error, and the
mapping from the runtime's errors to HTTP statuses.

Every error body is ``{"error": {"code", "message", "type", ["param"],
["issues"]}}``: OpenAI's error shape (its clients read ``message``, ``type``,
``code`` and ``param``), with an issue per field where there are several. An
issue names the field (``body.input``, or a resource's ``spec.tools[1]``) and,
where there is one, the fix. Nothing a client sends produces a 5xx: a request the
runtime refuses is a 4xx saying why; a 503 means the store does not answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Route

from agentrt._text import count
from agentrt.errors import (
    BudgetExhausted,
    ConflictError,
    NotFoundError,
    SpecError,
    SpecIssue,
    StoreError,
    UsageError,
)

__all__ = ["ApiError", "ErrorBody", "ErrorDetail", "error_body", "install_handlers", "problem"]

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}
# OpenAI's error types, by status class (its clients branch on the status, not on these).
_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def _type(status: int) -> str:
    return _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


class ErrorDetail(BaseModel):
    """What went wrong: the fields of every error the API answers."""

    code: str = Field(description="what kind of error: not_found, invalid, conflict, ...")
    message: str = Field(description="what went wrong and, where there is one, the fix")
    type: str = Field(description="OpenAI's error type: invalid_request_error, ...")
    param: str | None = Field(default=None, description="the request field it is about")
    issues: list[dict[str, Any]] | None = Field(
        default=None, description="one per problem: field, message (a resource's: fix)"
    )


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


class ApiError(Exception):
    """A refusal with its status, code and message (and headers, e.g. ``Retry-After``,
    and ``param``: the one request field it is about)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        issues: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.issues = list(issues)
        self.headers = headers
        self.param = param


def problem(
    status: int,
    message: str,
    *,
    code: str | None = None,
    issues: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    """The response of an error."""
    body = error_body(status, message, code=code, issues=issues, param=param)
    return JSONResponse(body, status_code=status, headers=headers)


def error_body(
    status: int,
    message: str,
    *,
    code: str | None = None,
    issues: Sequence[dict[str, Any]] = (),
    param: str | None = None,
) -> dict[str, Any]:
    """The body of an error (also sent inside a stream that fails after it began)."""
    error: dict[str, Any] = {
        "code": code or _CODES.get(status, "error"),
        "message": message,
        "type": _type(status),
    }
    if param is not None:
        error["param"] = param
    if issues:
        error["issues"] = list(issues)
    return {"error": error}


def spec_issue(issue: SpecIssue) -> dict[str, Any]:
    """A resource's validation issue as JSON: no file (the request is the document)."""
    return {
        "document": issue.file,
        "resource": issue.resource,
        "field": issue.field_path,
        "message": issue.message,
        "fix": issue.fix,
    }


def _validation_issue(error: Any, body: Any) -> dict[str, Any]:
    loc = ".".join(str(part) for part in _sent_path(error.get("loc", ()), body))
    return {"field": loc, "message": error.get("msg", "invalid"), "type": error.get("type")}


def _sent_path(loc: Sequence[Any], body: Any) -> list[Any]:
    """``loc`` as the client wrote it: pydantic puts a discriminated union's tag (the
    value of ``action``, say) in the path, where the request has no such field."""
    path: list[Any] = []
    node: Any = None
    tagged = False
    for part in loc:
        if not path and part == "body":
            node = body
        elif isinstance(node, dict) and not tagged and part not in node and part in node.values():
            tagged = True  # the tag of the member that was chosen: once per level
            continue
        elif isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        tagged = False
        path.append(part)
    return path


def _allowed(request: Request, routes: Sequence[BaseRoute]) -> list[str]:
    """Every method of the path: Starlette's 405 names only the first route's, though
    the path's other methods are routes of their own."""
    methods: set[str] = set()
    for route in routes:
        if (
            isinstance(route, Route)
            and route.methods
            and route.matches(request.scope)[0] != Match.NONE
        ):
            methods |= route.methods
    return sorted(methods)


def install_handlers(app: FastAPI, routes: Sequence[BaseRoute] = ()) -> None:
    """Make every error the app raises answer in the one shape (a 405's ``Allow``
    names the methods of ``routes`` on its path)."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return problem(
            exc.status, exc.message, code=exc.code, issues=exc.issues, headers=exc.headers,
            param=exc.param,
        )  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [_validation_issue(e, exc.body) for e in exc.errors()]
        first = issues[0] if issues else {"field": "", "message": "invalid request"}
        message = f"{first['field'] or 'request'}: {first['message']}"
        param = str(first["field"]).removeprefix("body.") or None
        return problem(422, message, issues=issues, param=param)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(_allowed(request, routes))}
        return problem(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(SpecError)
    async def _spec(_: Request, exc: SpecError) -> JSONResponse:
        issues = [spec_issue(i) for i in exc.issues]
        return problem(422, f"{count(len(issues), 'problem')} in the resources", issues=issues)

    @app.exception_handler(StoreError)
    async def _store(_: Request, exc: StoreError) -> JSONResponse:
        log.warning("the store refused a request: %s", exc)
        return problem(
            503, "the store does not answer now; try again", headers={"Retry-After": "1"}
        )

    @app.exception_handler(NotFoundError)
    async def _missing(_: Request, exc: NotFoundError) -> JSONResponse:
        return problem(404, str(exc))

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return problem(409, str(exc))

    @app.exception_handler(UsageError)
    async def _usage(_: Request, exc: UsageError) -> JSONResponse:
        return problem(400, str(exc))

    @app.exception_handler(BudgetExhausted)
    async def _budget(_: Request, exc: BudgetExhausted) -> JSONResponse:
        # A query the tenant's Budgets have no room for: nothing was created.
        return problem(429, str(exc), code="budget_exhausted")
