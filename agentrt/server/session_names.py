"""A tenant's session ids, and the ids the store keeps them under.

Session ids are one space in the store, shared by every namespace. Over the API
a session id is the tenant's own: the server keeps tenant ``acme``'s session
``chat`` as ``acme/chat`` (a tenant's name has no ``/``), so two tenants may
both have a ``chat`` and neither learns that the other has one. Everything the
API answers gives the tenant's id back. A session of the tenant's namespace
made outside the API (by the CLI on the server's store) has no such prefix: it
is shown, and found, under the store's id.
"""

from __future__ import annotations

from typing import Any

from agentrt.engine import Runtime, SessionView

__all__ = ["find_session", "session_dict", "shown", "stored", "with_shown_session"]


def stored(tenant: str, session: str) -> str:
    """The store's id of the tenant's session ``session``."""
    return f"{tenant}/{session}"


def shown(tenant: str, session_id: str | None) -> str | None:
    """The tenant's id of the store's session ``session_id``."""
    if session_id is None:
        return None
    return session_id.removeprefix(f"{tenant}/")


def with_shown_session(run: dict[str, Any], tenant: str) -> dict[str, Any]:
    """A run's summary (``run_summary``) with its session as the tenant names it."""
    run["session"] = shown(tenant, run.get("session"))
    return run


async def find_session(
    runtime: Runtime, tenant: str, session: str, principal: str | None = None
) -> str | None:
    """The store's id of the tenant's session ``session`` (one ``principal`` started,
    when given), or ``None`` if it has none."""
    for candidate in (stored(tenant, session), session):
        found = await runtime.store.get_session(candidate)
        if found is not None and found.namespace == tenant:
            mine = principal is None or found.principal == principal
            return candidate if mine else None
    return None


def session_dict(view: SessionView, tenant: str) -> dict[str, Any]:
    """A session's view as JSON, with the ids the tenant knows."""
    data = view.to_dict()
    data["id"] = shown(tenant, view.id)
    data["parent_session"] = shown(tenant, view.parent_session)
    return data
