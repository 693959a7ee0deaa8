"""``/v1/sessions``: the tenant's sessions with their state, one with its turns, and
deleting one.

A session is ``idle`` (every turn ended), ``busy`` (a turn is queued or
running) or ``waiting`` (a turn waits for a person, and the turns after it with
it). Its turns are its runs in turn order, each with its status, its answer and
whether later turns remember it. Deleting a session deletes its turns and their
child runs with their logs (forks of its turns keep their own sessions); it is
refused (409) while a turn is unfinished. Session ids are the tenant's own
(:mod:`agentrt.server.session_names`); another tenant's is a 404.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from agentrt import _json
from agentrt.engine import SessionView
from agentrt.errors import SessionBusy
from agentrt.server.auth import Caller, require, server_context
from agentrt.server.keys import Principal
from agentrt.server.ownership import own_principal
from agentrt.server.problems import ApiError
from agentrt.server.session_names import find_session, session_dict, with_shown_session

__all__ = ["router"]

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

_NOT_FOUND = "no session with this id in the key's tenant"


def _cursor_of(view: SessionView) -> str:
    raw = _json.dumps([view.created_at, view.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(cursor: str) -> tuple[float, str]:
    """The ``(created_at, id)`` a cursor of this API points after; 400 for another."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, session_id = _json.loads(raw)
        if isinstance(created_at, int | float) and isinstance(session_id, str):
            return float(created_at), session_id
    except (binascii.Error, ValueError, TypeError):
        pass
    raise ApiError(400, "the cursor is not one this API gave; start again without it")


@router.get("", summary="List sessions")
async def list_sessions(
    request: Request,
    principal: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """The tenant's sessions (a ``user`` key's: those it started) with their state,
    newest first; ``next_cursor`` pages on."""
    runtime = server_context(request).runtime
    before = _position(cursor) if cursor else None
    views = await runtime.sessions(
        namespace=principal.tenant, principal=own_principal(principal), before=before, limit=limit
    )
    return {
        "items": [session_dict(v, principal.tenant) for v in views],
        "next_cursor": _cursor_of(views[-1]) if len(views) == limit else None,
    }


@router.get("/{session_id}", summary="Get a session and its turns")
async def get_session(
    request: Request,
    principal: Caller,
    session_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> dict[str, Any]:
    """The session's state and its first ``limit`` turns, in turn order."""
    runtime = server_context(request).runtime
    found = await find_session(runtime, principal.tenant, session_id, own_principal(principal))
    if found is None:
        raise ApiError(404, _NOT_FOUND)
    view = await runtime.session(found, limit=limit)
    turns = []
    for turn in view.turns:
        data = turn.to_dict()
        data["run"] = with_shown_session(data["run"], principal.tenant)
        turns.append(data)
    return {"session": session_dict(view, principal.tenant), "turns": turns}


@router.delete("/{session_id}", summary="Delete a session and its turns")
async def delete_session(
    request: Request,
    principal: Annotated[Principal, Depends(require("operator"))],
    session_id: str,
) -> dict[str, Any]:
    """Delete the session, its turns and their child runs; 409 while a turn is unfinished."""
    runtime = server_context(request).runtime
    found = await find_session(runtime, principal.tenant, session_id)
    if found is None:
        raise ApiError(404, _NOT_FOUND)
    try:
        removed = await runtime.delete_session(found)
    except SessionBusy:
        raise ApiError(
            409,
            "the session has an unfinished turn; cancel it or let it end, then delete",
            code="session_busy",
        ) from None
    return {"deleted": {"session": session_id, "runs": list(removed)}}
