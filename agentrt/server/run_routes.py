"""``/v1/queries`` and ``/v1/runs``: submit a query, list and read the tenant's runs.

A query is submitted in the background (202, the run as created) or, with
``wait``, answered when its run ends or waits for a person (200), or when the
server's longest wait has passed (202, the run as it is then). The same
``idempotency_key`` in a tenant always gives the same run, whichever replica
receives it: the store makes the key unique. A run of another tenant is
answered as if it did not exist.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from agentrt.engine import RunView, run_summary
from agentrt.errors import NotFoundError, SessionBusy
from agentrt.server.auth import Caller, require, server_context
from agentrt.server.keys import Principal
from agentrt.server.problems import ApiError
from agentrt.server.session_names import stored, with_shown_session
from agentrt.spec.resources import DoubleTexting
from agentrt.state.records import RunRecord, RunStatus

__all__ = ["QueryRequest", "router"]

router = APIRouter(prefix="/v1", tags=["runs"])


class QueryRequest(BaseModel):
    """A query: the Agent or Team to run, its input, and how to submit it."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(min_length=1, max_length=253, description="an Agent or Team name")
    input: str = Field(max_length=1 << 20, description="the user's message")
    session: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=r"^[^/]+$",
        description="a session to continue (the tenant's own id, no '/')",
    )
    idempotency_key: str | None = Field(
        default=None, max_length=255, description="the same key never starts two runs"
    )
    wait: bool = Field(default=False, description="answer when the run ends")
    wait_s: float | None = Field(
        default=None, gt=0, description="wait at most this long (the server caps it)"
    )
    double_texting: DoubleTexting | None = Field(
        default=None,
        description="when the session has an unfinished turn: reject (409), enqueue, "
        "interrupt or rollback; default: the target's session.double_texting",
    )


async def run_of(request: Request, principal: Principal, run_id: str) -> RunRecord:
    """The caller's tenant's run ``run_id``; 404 for any other."""
    run = await server_context(request).runtime.store.get_run(run_id)
    if run is None or run.namespace != principal.tenant:
        raise ApiError(404, "no run with this id in the key's tenant")
    return run


@router.post("/queries", status_code=202, summary="Submit a query")
async def submit(
    request: Request,
    response: Response,
    body: QueryRequest,
    principal: Annotated[Principal, Depends(require("user"))],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> dict[str, Any]:
    """Start a run of ``target`` in the caller's tenant."""
    ctx = server_context(request)
    tenant = principal.tenant
    try:
        run = await ctx.runtime.submit(
            body.target,
            body.input,
            namespace=tenant,
            session=stored(tenant, body.session) if body.session else None,
            idempotency_key=body.idempotency_key or idempotency_key,
            double_texting=body.double_texting,
        )
    except SessionBusy:
        raise ApiError(
            409,
            f"session {body.session!r} has an unfinished turn and the query's double_texting "
            "is reject: nothing was created; send it again when the turn ends (GET "
            "/v1/sessions/ID), or with double_texting enqueue, interrupt or rollback",
            code="session_busy",
        ) from None
    except NotFoundError:
        # The engine's message may say which other namespaces have the target.
        raise ApiError(
            404, "no Agent or Team of that name in the key's tenant (apply it first)"
        ) from None
    response.headers["Location"] = f"/v1/runs/{run.id}"
    if not body.wait:
        return {"run": _summary(run, tenant)}
    limit = min(body.wait_s or ctx.limits.max_wait_s, ctx.limits.max_wait_s)
    try:
        async with asyncio.timeout(limit):
            result = await ctx.runtime.wait(run.id)
    except TimeoutError:
        current = await run_of(request, principal, run.id)
        return {"run": _summary(current, tenant)}
    response.status_code = 200
    current = await run_of(request, principal, run.id)
    return {"run": _summary(current, tenant), "result": result.to_dict()}


@router.get("/runs", summary="List runs")
async def list_runs(
    request: Request,
    principal: Caller,
    status: Annotated[list[RunStatus] | None, Query()] = None,
    session: str | None = None,
    parent: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The tenant's runs, newest first (in turn order for one session)."""
    store = server_context(request).runtime.store
    session_id = stored(principal.tenant, session) if session else None
    runs = await store.list_runs(
        namespace=principal.tenant, session_id=session_id, parent=parent, statuses=status,
        limit=limit,
    )  # fmt: skip
    return {"items": [_summary(r, principal.tenant) for r in runs]}


@router.get("/runs/{run_id}", summary="Get a run")
async def get_run(request: Request, principal: Caller, run_id: str) -> dict[str, Any]:
    """The run's read model: its row, steps, children and whole event log."""
    run = await run_of(request, principal, run_id)
    store = server_context(request).runtime.store
    events = await store.read_events(run.id)
    children = await store.list_runs(parent=run.id, limit=1000)
    view = RunView.of(run, events, tuple(RunView.of(c, []) for c in children))
    data = view.to_dict()
    with_shown_session(data["run"], principal.tenant)
    return data


def _summary(run: RunRecord, tenant: str) -> dict[str, Any]:
    """A run's row as the tenant sees it."""
    return with_shown_session(run_summary(run), tenant)
