"""``/v1/audit``: the key's tenant's audit log, listed and verified over HTTP.

The listing takes the filters of ``agentrt audit list`` (who, agent, run, kind,
time) and gives the records newest first, a page at a time: a page's
``next_cursor`` is the ``cursor`` of the next, and records appended meanwhile
never shift it (a cursor names the record numbers before it). ``verify`` walks
the tenant's hash chain as ``agentrt audit verify -n TENANT`` does. Both need an
operator's key (or an admin's): the log says what every principal of the tenant
did, which a ``user`` key is not shown; a key reads only its own tenant's log.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from agentrt import _json
from agentrt.server.auth import require, server_context
from agentrt.server.keys import Principal
from agentrt.server.problems import ApiError
from agentrt.server.run_routes import TEXT, Instant
from agentrt.state.audit import verify_audit

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["audit"])

Operator = Annotated[Principal, Depends(require("operator"))]


@router.get("/audit", summary="List the tenant's audit log")
async def list_audit(
    request: Request,
    principal: Operator,
    by: Annotated[str | None, Query(alias="principal", max_length=300, pattern=TEXT)] = None,
    agent: Annotated[str | None, Query(max_length=253, pattern=TEXT)] = None,
    run: Annotated[str | None, Query(max_length=253, pattern=TEXT)] = None,
    kind: Annotated[list[str] | None, Query(max_length=64)] = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """The records of the key's tenant, newest first, a page at a time.

    Every filter given must hold: ``principal`` (who did it: a key's ``key:NAME``,
    a user), ``agent`` (the run's, or the Agent or Team changed), ``run``, ``kind``
    (repeatable: any of them) and ``since <= ts < until`` (ISO 8601 with a zone,
    or Unix seconds). ``next_cursor``, if not null, is the ``cursor`` of the next
    page.
    """
    store = server_context(request).runtime.store
    found = await store.list_audit(
        principal.tenant, principal=by, agent=agent, run_id=run, kinds=kind, since=since,
        until=until, before=None if cursor is None else _cursor_of(cursor), newest_first=True,
        limit=limit + 1,
    )  # fmt: skip
    page = found[:limit]
    more = len(found) > limit
    return {
        "items": [record.to_dict() for record in page],
        "next_cursor": _cursor_text(page[-1].seq) if more else None,
    }


@router.get("/audit/verify", summary="Verify the tenant's audit log")
async def verify(request: Request, principal: Operator) -> dict[str, Any]:
    """Walk the key's tenant's hash chain from its first record to its head: ``ok``,
    how many ``records`` were checked, the ``head`` hash, and the first ``broken``
    record (its ``seq``, ``kind`` of break and ``detail``) if the chain is not whole."""
    verdict = await verify_audit(server_context(request).runtime.store, principal.tenant)
    return verdict.to_dict()


def _cursor_text(seq: int) -> str:
    return base64.urlsafe_b64encode(_json.dumps({"before": seq})).decode().rstrip("=")


def _cursor_of(text: str) -> int:
    """The record number a ``next_cursor`` names (the page starts before it); 400 for
    anything else."""
    try:
        data = _json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        seq = data.get("before") if isinstance(data, dict) else None
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0:
            return seq
    except (ValueError, TypeError, binascii.Error):
        pass
    raise ApiError(400, "cursor: give a next_cursor of an earlier page, or none for the first")
