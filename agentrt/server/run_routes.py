"""``/v1/queries`` and ``/v1/runs``: submit a query, list and read the tenant's runs.

A query is submitted in the background (202, the run as created) or, with
``wait``, answered when its run ends or waits for a person (200), or when the
server's longest wait has passed (202, the run as it is then). The same
``idempotency_key`` in a tenant always gives the same run, whichever replica
receives it: the store makes the key unique. A run records the principal that
submitted it. A run of another tenant, and for a ``user`` key a run another
principal started, is answered as if it did not exist.

Runs are listed newest first by ``(created_at, id)``, a page at a time: a page's
``next_cursor`` gives the next, and runs created meanwhile never shift it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agentrt import _json
from agentrt.engine import RunView, run_summary
from agentrt.errors import NotFoundError, SessionBusy, SessionTaken
from agentrt.server.auth import Caller, require, server_context
from agentrt.server.keys import Principal
from agentrt.server.ownership import own_idempotency_key, own_principal, sees, session_taken
from agentrt.server.problems import ApiError
from agentrt.server.session_names import stored, with_shown_session
from agentrt.spec.agent_spec import Budgets, PriorityClass
from agentrt.spec.resources import DoubleTexting
from agentrt.state.records import RunCursor, RunRecord, RunStatus

__all__ = ["TEXT", "QueryRequest", "router", "run_of"]

router = APIRouter(prefix="/v1", tags=["runs"])

TEXT = r"^[^\x00]*$"
"""A name or id a request gives: no NUL, which no store can hold in a text column."""


def _seconds(value: Any) -> Any:
    """Unix seconds, given as such or as an ISO 8601 time with its zone.

    Seconds are taken as given: a run's own ``created_at`` through a datetime would
    lose its last digits and miss the run it names.
    """
    if not isinstance(value, str):
        return value
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError("give a finite number of Unix seconds")
        return seconds
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("give Unix seconds or an ISO 8601 time (2026-01-31T12:00:00Z)") from None
    if when.tzinfo is None:
        raise ValueError("give the time's zone (e.g. Z or +02:00), or Unix seconds")
    return when.timestamp()


Instant = Annotated[float, BeforeValidator(_seconds)]
"""A point in time in a query: Unix seconds, or ISO 8601 with a zone."""


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
    priority: PriorityClass | None = Field(
        default=None,
        description="low, normal or high: its class in the tenant's queue (default: the "
        "target's priority)",
    )
    budgets: Budgets | None = Field(
        default=None,
        description="limits of this run (tokens, tool calls, cost, deadline_s): each one "
        "given lowers the target's, never raises it",
    )
    concurrency: int | None = Field(
        default=None, ge=1, description="a Team's run: at most this many nodes at once"
    )
    tags: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list,
        max_length=32,
        description="words the target Agent's routing.rules may route by",
    )


async def run_of(request: Request, principal: Principal, run_id: str) -> RunRecord:
    """The run ``run_id`` if the caller may know of it (see :func:`sees`); 404 otherwise."""
    run = None if "\x00" in run_id else await server_context(request).runtime.store.get_run(run_id)
    if run is None or not sees(principal, run):
        raise ApiError(404, "no run with this id for this key")
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
            idempotency_key=own_idempotency_key(principal, body.idempotency_key or idempotency_key),
            double_texting=body.double_texting,
            priority=body.priority,
            principal=principal.label,
            role=principal.role,
            own_session=principal.role == "user",
            budgets=body.budgets,
            tighten_only=True,
            concurrency=body.concurrency,
            tags=body.tags,
        )
    except SessionTaken:
        raise session_taken("session") from None
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
    target: Annotated[str | None, Query(max_length=253, pattern=TEXT)] = None,
    session: Annotated[str | None, Query(max_length=253, pattern=TEXT)] = None,
    parent: Annotated[str | None, Query(max_length=253, pattern=TEXT)] = None,
    by: Annotated[str | None, Query(alias="principal", max_length=300, pattern=TEXT)] = None,
    created_after: Instant | None = None,
    created_before: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=600)] = None,
) -> dict[str, Any]:
    """The tenant's runs (a ``user`` key's: its own), newest first, a page at a time.

    Every filter given must hold: ``status`` (repeatable: any of them), ``target``
    (the Agent or Team), ``session``, ``parent`` (its child runs and forks),
    ``principal`` (who started it) and ``created_after <= created_at <
    created_before`` (ISO 8601 with a zone, or Unix seconds). ``next_cursor``, if
    not null, is the ``cursor`` of the next page.
    """
    if principal.role == "user" and by not in (None, principal.label):
        raise ApiError(403, f"a user key lists only its own runs ({principal.label})")
    store = server_context(request).runtime.store
    session_id = stored(principal.tenant, session) if session else None
    runs = await store.list_runs(
        namespace=principal.tenant, session_id=session_id, parent=parent, statuses=status,
        agent=target, principal=own_principal(principal) or by,
        created_after=created_after, created_before=created_before,
        before=None if cursor is None else _cursor_of(cursor), order="newest", limit=limit + 1,
    )  # fmt: skip
    page = runs[:limit]
    more = len(runs) > limit
    return {
        "items": [_summary(r, principal.tenant) for r in page],
        "next_cursor": _cursor_text((page[-1].created_at, page[-1].id)) if more else None,
    }


def _cursor_text(cursor: RunCursor) -> str:
    return base64.urlsafe_b64encode(_json.dumps(list(cursor))).decode().rstrip("=")


def _cursor_of(text: str) -> RunCursor:
    """The page position a ``next_cursor`` names; 400 for anything else."""
    try:
        created_at, run_id = _json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if isinstance(created_at, int | float) and isinstance(run_id, str) and "\x00" not in run_id:
            return float(created_at), run_id
    except (ValueError, TypeError, OverflowError, binascii.Error):
        pass
    raise ApiError(400, "cursor: give a next_cursor of an earlier page, or none for the first")


@router.get("/runs/{run_id}", summary="Get a run")
async def get_run(request: Request, principal: Caller, run_id: str) -> dict[str, Any]:
    """The run's read model: its row, steps, children and whole event log."""
    run = await run_of(request, principal, run_id)
    store = server_context(request).runtime.store
    events = await store.read_events(run.id)
    found = await store.list_runs(parent=run.id, namespace=principal.tenant, limit=1000)
    children = [c for c in found if sees(principal, c)]  # a user's: not others' forks
    view = RunView.of(run, events, tuple(RunView.of(c, []) for c in children))
    data = view.to_dict()
    with_shown_session(data["run"], principal.tenant)
    place = (await server_context(request).runtime.queue_places([run])).get(run.id)
    if place is not None:  # queued: its place in its tenant's queue, wait, what holds it
        data["run"]["queue"] = place.to_dict()
    return data


def _summary(run: RunRecord, tenant: str) -> dict[str, Any]:
    """A run's row as the tenant sees it."""
    return with_shown_session(run_summary(run), tenant)
