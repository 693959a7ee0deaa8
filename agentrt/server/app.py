"""The control plane's ASGI application: every route under ``/v1``, the health
checks, the OpenAPI document, the body size limit and the error shape.

:func:`create_app` takes a started :class:`~agentrt.engine.Runtime` and leaves
its life to the caller (``agentrt serve`` or a test), so one runtime can serve
the API and execute runs in the same process.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentrt._text import count
from agentrt._version import __version__
from agentrt.engine import Runtime
from agentrt.server import (
    a2a_routes,
    audit_routes,
    event_routes,
    openai_routes,
    resource_routes,
    run_action_routes,
    run_routes,
    session_routes,
)
from agentrt.server.context import HostTrust, RateLimiter, ServerContext, ServerLimits
from agentrt.server.event_tail import RunTails
from agentrt.server.openapi_doc import openapi_document
from agentrt.server.problems import ApiError, ErrorBody, install_handlers, problem

__all__ = ["ROUTERS", "create_app"]

ROUTERS: tuple[APIRouter, ...] = (
    resource_routes.router,
    run_routes.router,
    run_action_routes.router,
    session_routes.router,
    event_routes.router,
    openai_routes.router,
    a2a_routes.router,
    audit_routes.router,
)
"""Every part of the API, in the order the app includes them."""


class BodyLimit:
    """Refuse a request body over ``limit`` bytes (413) before a handler reads it all,
    and one whose next part takes longer than ``timeout_s`` to arrive (408), so a
    client that stalls mid-body holds no handler. Once the body is whole, waiting on
    the connection (a stream's for its client to leave) is not timed."""

    def __init__(self, app: ASGIApp, limit: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen, whole, refused = 0, False, False

        async def refuse(status: int, message: str) -> Message:
            # Answer here, and tell the app the client left: whatever it does with
            # that (FastAPI turns a failed read into a 400) is never sent.
            nonlocal refused
            refused = True
            await problem(status, message)(scope, receive, send)
            return {"type": "http.disconnect"}

        async def counted() -> Message:
            nonlocal seen, whole
            if whole or refused:
                return await receive()
            try:
                async with asyncio.timeout(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                said = f"the request body stalled for over {self.timeout_s:g} s; send it whole"
                return await refuse(408, said)
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if seen > self.limit:
                    return await refuse(413, self._too_large())
            return message

        async def sent(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, sent)

    def _too_large(self) -> str:
        return f"the request body is over {count(self.limit, 'byte')}"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await problem(413, self._too_large())(scope, receive, send)


def create_app(
    runtime: Runtime,
    *,
    limits: ServerLimits | None = None,
    trust: HostTrust | None = None,
) -> FastAPI:
    """The API over ``runtime`` (started; the caller closes it)."""
    limits = limits or ServerLimits()
    app = FastAPI(
        title="agentrt",
        version=__version__,
        summary="The agentrt control plane: resources, queries, runs and their live events.",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.agentrt = ServerContext(
        runtime=runtime,
        limits=limits,
        trust=trust or HostTrust(),
        limiter=RateLimiter(limits.rate_per_s, limits.burst),
        tails=RunTails(lambda: runtime.store),
    )
    install_handlers(app, [route for router in ROUTERS for route in router.routes])
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(_known_query)])
    _health(app)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    app.openapi = lambda: openapi_document(app, ROUTERS)  # type: ignore[method-assign]
    return app


async def _known_query(request: Request) -> None:
    """422 for a query parameter the endpoint does not take: a misspelt filter
    (``?stauts=running``) would otherwise list everything, as if none were given."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise ApiError(
            422,
            f"unknown query parameter {unknown[0]!r}; this endpoint takes: {takes}",
            issues=[{"field": f"query.{name}", "message": "not a parameter"} for name in unknown],
            param=unknown[0],
        )


def _query_names(dependant: Any) -> set[str]:
    """The query parameters an endpoint takes, its dependencies' too."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _health(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, Any]:
        """200 while the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness",
        response_model=None,
        responses={503: {"model": ErrorBody, "description": "the store does not answer"}},
    )
    async def readyz(request: Request) -> JSONResponse | dict[str, Any]:
        """200 while the store answers; 503 otherwise."""
        ctx: ServerContext = request.app.state.agentrt
        try:
            await ctx.runtime.store.get_run("readiness-probe")
        except Exception as exc:
            return problem(503, f"the store does not answer: {exc}")
        return {"status": "ready"}
