"""Who may call what: the principal of a request, from its API key, and the role an
endpoint needs.

A request carries its key as ``Authorization: Bearer agrt_...`` (or
``X-API-Key``). No key, a malformed, unknown or revoked one: 401. A key whose
role is below the endpoint's: 403. A resource, run or session of another
tenant is answered as if it did not exist (404), so a key learns nothing of
what other tenants have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from agentrt.server.context import ServerContext
from agentrt.server.keys import Principal, Role, verify_key
from agentrt.server.problems import ApiError

__all__ = ["Caller", "require", "role_of", "server_context"]


def server_context(request: Request) -> ServerContext:
    """The server's parts, kept on the app."""
    ctx: ServerContext = request.app.state.agentrt
    return ctx


def _key_text(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    return request.headers.get("x-api-key")


_UNAUTHENTICATED = {"WWW-Authenticate": 'Bearer realm="agentrt"'}


async def _principal(request: Request) -> Principal:
    ctx = server_context(request)
    text = _key_text(request)
    if not text:
        raise ApiError(
            401, "give an API key: Authorization: Bearer agrt_...", headers=_UNAUTHENTICATED
        )
    principal = await verify_key(ctx.runtime.store, text)
    if principal is None:
        raise ApiError(401, "the API key is unknown or revoked", headers=_UNAUTHENTICATED)
    ctx.limiter.check(principal.key_id)
    request.state.principal = principal
    return principal


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency giving the request's principal if its role includes ``role``."""

    async def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.may(role):
            raise ApiError(
                403, f"this needs the {role} role; the key {principal.name!r} is {principal.role}"
            )
        return principal

    dependency.role = role  # type: ignore[attr-defined]  # read by role_of (the OpenAPI document)
    return dependency


def role_of(dependant: Any) -> str | None:
    """The least role an endpoint requires (its ``require`` dependency), or ``None``
    for an endpoint that takes no key."""
    for dep in dependant.dependencies:
        role = getattr(dep.call, "role", None) or role_of(dep)
        if role:
            return str(role)
    return None


Caller = Annotated[Principal, Depends(require("viewer"))]
"""Any valid key of any role."""
