"""A2A (the Agent2Agent protocol, JSON-RPC binding): every Agent of a tenant as an A2A
agent, with its card and its JSON-RPC endpoint.

- ``GET /a2a/NAME/.well-known/agent-card.json``: Agent NAME's card. Its
  interface is ``/a2a/NAME/``, JSON-RPC, protocol 1.0 (and 0.3 at the same
  URL); it can stream, has no push notifications, and asks for an API key of
  the tenant as a Bearer token.
- ``GET /.well-known/agent-card.json``: the card of the tenant's default
  Agent: the one labelled ``agentrt.dev/a2a-default: "true"``, or the
  tenant's only Agent. Otherwise 404, naming the per-agent cards.
- ``POST /a2a/NAME/``: the JSON-RPC endpoint (see
  :mod:`agentrt.server.a2a_methods` for what each method does).

A tenant is a key's: cards and endpoints need a key (any role reads; sending
and cancelling need ``user``), and an Agent of another tenant is a 404 like
one that does not exist. Errors of a call are JSON-RPC errors (HTTP 200), as
the protocol has them: a task of another tenant is ``TaskNotFoundError``, the
same answer as for a task that never was. An ``A2A-Version`` header other
than 0.3 or 1.x is ``VersionNotSupportedError``; without one, the method's
name says the version (``SendMessage`` 1.0, ``message/send`` 0.3).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from agentrt import _json
from agentrt._text import count
from agentrt.errors import BudgetExhausted, StoreError, UsageError
from agentrt.server.a2a_methods import HANDLERS, Call
from agentrt.server.a2a_wire import (
    BUDGET_EXHAUSTED,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PUSH_NOT_SUPPORTED,
    UNSUPPORTED,
    VERSION_NOT_SUPPORTED,
    RpcError,
)
from agentrt.server.auth import Caller, server_context
from agentrt.server.context import ServerContext
from agentrt.server.keys import Principal
from agentrt.server.problems import ApiError
from agentrt.state.records import ResourceRecord

__all__ = ["DEFAULT_LABEL", "router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["a2a"])

DEFAULT_LABEL: Final = "agentrt.dev/a2a-default"
"""The label (value ``"true"``) that makes an Agent the tenant's card at the root."""

_PUSH_METHODS: Final = frozenset({
    "CreateTaskPushNotificationConfig", "SetTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig", "ListTaskPushNotificationConfigs",
    "ListTaskPushNotificationConfig", "DeleteTaskPushNotificationConfig",
    "tasks/pushNotificationConfig/set", "tasks/pushNotificationConfig/get",
    "tasks/pushNotificationConfig/list", "tasks/pushNotificationConfig/delete",
})  # fmt: skip
_CARD_METHODS: Final = frozenset({"GetExtendedAgentCard", "agent/getAuthenticatedExtendedCard"})
_RPC_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["jsonrpc", "method"],
                    "properties": {
                        "jsonrpc": {"const": "2.0"},
                        "id": {"type": ["string", "integer", "null"]},
                        "method": {"type": "string"},
                        "params": {"type": "object"},
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "a JSON-RPC response, or for the streaming methods a stream of them",
            "content": {"application/json": {}, "text/event-stream": {}},
        }
    },
}


async def _agent(ctx: ServerContext, principal: Principal, name: str) -> ResourceRecord:
    record = await ctx.runtime.store.get_resource("Agent", principal.tenant, name)
    if record is None:
        raise ApiError(404, f"no Agent {name!r} in this tenant")
    return record


def _labels(record: ResourceRecord) -> dict[str, str]:
    labels: dict[str, str] = record.body.get("metadata", {}).get("labels") or {}
    return labels


def card(request: Request, record: ResourceRecord) -> dict[str, Any]:
    """The agent card of a stored Agent, its endpoint on this server."""
    name = record.name
    url = f"{str(request.base_url).rstrip('/')}/a2a/{name}/"
    about = f"The agentrt Agent {name!r}: send it a message, get its answer."
    return {
        "name": name,
        "description": about,
        "version": str(record.generation),  # the Agent resource's generation
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
        ],
        "capabilities": {
            "streaming": True,
            "pushNotifications": False,
            "extendedAgentCard": False,
        },
        "securitySchemes": {
            "agentrt-key": {
                "httpAuthSecurityScheme": {
                    "scheme": "Bearer",
                    "bearerFormat": "agrt_<id>_<secret>",
                    "description": "an agentrt API key of the agent's tenant "
                    "(`agentrt keys create`)",
                }
            }
        },
        "securityRequirements": [{"schemes": {"agentrt-key": {"list": []}}}],
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": name, "name": name, "description": about, "tags": ["agentrt"]}],
    }


@router.get("/a2a/{agent}/.well-known/agent-card.json", summary="An Agent's A2A card")
async def agent_card(request: Request, principal: Caller, agent: str) -> dict[str, Any]:
    """The A2A agent card of Agent ``agent`` of the caller's tenant."""
    return card(request, await _agent(server_context(request), principal, agent))


@router.get("/.well-known/agent-card.json", summary="The tenant's default A2A card")
async def default_card(request: Request, principal: Caller) -> dict[str, Any]:
    """The card of the tenant's Agent labelled as its default, or of its only Agent."""
    store = server_context(request).runtime.store
    agents = await store.list_resources("Agent", principal.tenant)
    chosen = [
        a for a in agents if a.body["metadata"].get("labels", {}).get(DEFAULT_LABEL) == "true"
    ]
    if len(chosen) != 1:
        chosen = agents if len(agents) == 1 and not chosen else []
    if not chosen:
        raise ApiError(
            404, f"this tenant has {count(len(agents), 'Agent')} and no one default: read "
            f"/a2a/NAME/.well-known/agent-card.json, or label one Agent {DEFAULT_LABEL}: 'true'",
        )  # fmt: skip
    return card(request, chosen[0])


def _answer(rpc_id: Any, result: dict[str, Any] | None, error: RpcError | None) -> JSONResponse:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id}
    if error is not None:
        body["error"] = error.to_dict()
    else:
        body["result"] = result
    return JSONResponse(body)


def _version(header: str | None) -> None:
    """Refuse a protocol version other than 0.3 and 1.x (the patch number does not count)."""
    if header is None or not header.strip():
        return
    major, _, rest = header.strip().partition(".")
    minor = rest.partition(".")[0]
    if major == "1" or (major == "0" and minor == "3"):
        return
    raise RpcError(
        VERSION_NOT_SUPPORTED, f"A2A-Version {header[:20]!r}: this agent speaks 1.0 and 0.3"
    )


def _request(raw: bytes) -> tuple[Any, str, Any]:
    """A JSON-RPC request's id, method and params."""
    try:
        body = _json.loads(raw)
    except ValueError:
        raise RpcError(PARSE_ERROR, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise RpcError(INVALID_REQUEST, "give one JSON-RPC request object (no batches)")
    rpc_id = body.get("id")
    if isinstance(rpc_id, bool) or not isinstance(rpc_id, str | int | None):
        raise RpcError(INVALID_REQUEST, "id: a string, an integer or null")
    method = body.get("method")
    if body.get("jsonrpc") != "2.0" or not isinstance(method, str):
        raise _Invalid(rpc_id, 'a JSON-RPC 2.0 request has "jsonrpc": "2.0" and a "method"')
    return rpc_id, method, body.get("params", {})


class _Invalid(RpcError):
    """An invalid request whose id was read (the answer repeats it)."""

    def __init__(self, rpc_id: Any, message: str) -> None:
        super().__init__(INVALID_REQUEST, message)
        self.rpc_id = rpc_id


@router.post("/a2a/{agent}/", openapi_extra=_RPC_BODY, summary="An Agent's A2A endpoint")
async def rpc(request: Request, principal: Caller, agent: str) -> Response:
    """One JSON-RPC call to Agent ``agent`` of the caller's tenant."""
    ctx = server_context(request)
    await _agent(ctx, principal, agent)
    rpc_id: Any = None
    try:
        rpc_id, method, params = _request(await request.body())
        _version(request.headers.get("a2a-version"))
        found = HANDLERS.get(method)
        if found is None:
            raise _unknown(method)
        dialect, handler = found
        result = await handler(Call(ctx, principal, agent, rpc_id, params, dialect))
    except _Invalid as exc:
        return _answer(exc.rpc_id, None, exc)
    except RpcError as exc:
        return _answer(rpc_id, None, exc)
    except StoreError:
        raise  # a 503 with Retry-After: the client may try again
    except UsageError as exc:  # the Agent cannot run as it is (its spec, its Model)
        return _answer(rpc_id, None, RpcError(INTERNAL_ERROR, f"the agent cannot do it: {exc}"))
    except BudgetExhausted as exc:  # the tenant's Budgets have no room: nothing was created
        return _answer(rpc_id, None, RpcError(BUDGET_EXHAUSTED, str(exc)))
    if isinstance(result, Response):
        return result
    return _answer(rpc_id, result, None)


# The card names the URL with its slash; the one without is the same endpoint.
router.add_api_route("/a2a/{agent}", rpc, methods=["POST"], include_in_schema=False)


def _unknown(method: str) -> RpcError:
    if method in _PUSH_METHODS:
        return RpcError(PUSH_NOT_SUPPORTED, "this agent sends no push notifications")
    if method in _CARD_METHODS:
        return RpcError(UNSUPPORTED, "this agent has no extended card: its card is all there is")
    return RpcError(METHOD_NOT_FOUND, f"no method {method[:100]!r}; see the agent's card")
