"""What a ``user`` key owns in its tenant: the runs and sessions it started, and the
idempotency keys it sent.

Keys of the other roles act for the whole tenant. A ``user`` key acts for one
person, so what another key of its tenant started is not its own: such a run is
answered as if it did not exist, a session another key started cannot be
continued (409, ``session_taken``), and its idempotency keys live in a space of
its own, so the same key sent by two users starts two runs and neither gets the
other's back.
"""

from __future__ import annotations

from agentrt.server.keys import Principal
from agentrt.server.problems import ApiError
from agentrt.state.records import RunRecord

__all__ = ["OWNER_MARK", "own_idempotency_key", "own_principal", "sees", "session_taken"]

OWNER_MARK = "\x1f"
"""Ends the owner part of a ``user`` key's idempotency key (no client sends it in a
header, and both stores keep it in text)."""


def sees(principal: Principal, run: RunRecord) -> bool:
    """Whether ``principal`` may know of ``run``: a run of its tenant, and for a
    ``user`` key only one it started."""
    if run.namespace != principal.tenant:
        return False
    return principal.role != "user" or run.principal == principal.label


def own_principal(principal: Principal) -> str | None:
    """The principal whose things alone ``principal`` may list (``None``: all the
    tenant's)."""
    return principal.label if principal.role == "user" else None


def own_idempotency_key(principal: Principal, key: str | None) -> str | None:
    """The store's idempotency key for ``key`` sent by ``principal``: a ``user`` key's
    are its own, the other roles' are the tenant's."""
    if key is None or principal.role != "user":
        return key
    return f"{principal.label}{OWNER_MARK}{key}"


def session_taken(param: str) -> ApiError:
    """The 409 for a ``user`` key continuing a session another key of its tenant
    started (it learns nothing of whose)."""
    return ApiError(
        409,
        "this session was started by another key of the tenant, and a user key "
        "continues only its own sessions: choose another session id",
        code="session_taken",
        param=param,
    )
