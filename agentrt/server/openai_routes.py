"""The OpenAI-compatible endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``.

The ``model`` names an Agent or Team of the caller's tenant (``agent/NAME``,
``team/NAME``, or a bare ``NAME``: the Agent, else the Team). A completion is
a normal durable run, as ``POST /v1/queries`` starts it: its id is the
completion's ``id`` and the ``X-Agentrt-Run`` header, an ``Idempotency-Key``
header never starts two, and ``agentrt runs show ID`` opens it. The run goes on
if the client goes away.

The last message, the user's, is the run's input. ``X-Agentrt-Session`` names
a session to continue; without one, ``user`` gives the end user a session of
their own with this model. A session remembers the conversation, so the earlier
messages of a request are taken only where no session holds them yet (no
session, or its first turn), as the conversation so far, ahead of the input.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from agentrt import _json
from agentrt.errors import NotFoundError, SessionTaken
from agentrt.server.answer_feed import Ended, Idle, Item, Piece, follow_answer
from agentrt.server.auth import Caller, require, server_context
from agentrt.server.keys import Principal
from agentrt.server.openai_chat import ChatRequest, chunk, completion, model_object, run_input
from agentrt.server.ownership import own_idempotency_key, own_principal, session_taken
from agentrt.server.problems import ApiError, error_body
from agentrt.server.session_names import stored
from agentrt.state.base import Store
from agentrt.state.records import WAITING_STATUSES, ResourceRecord

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["openai"])

_KEEPALIVE_S: Final = 15.0  # a comment line this often keeps proxies from closing a quiet stream
_KINDS: Final = {"agent": "Agent", "team": "Team"}
# A completion, or with ``stream`` its chunks as server-sent events.
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/event-stream": {}}}
}


def _not_found(model: str) -> ApiError:
    return ApiError(
        404, f"the model {model!r} does not exist: models are agent/NAME or team/NAME of "
        "this key's tenant (GET /v1/models lists them)", code="model_not_found", param="model",
    )  # fmt: skip


async def _target(store: Store, tenant: str, model: str) -> ResourceRecord:
    """The Agent or Team ``model`` names in ``tenant``; 404 (model_not_found) else."""
    prefix, slash, name = model.partition("/")
    if slash and prefix not in _KINDS:
        raise _not_found(model)
    kinds = [_KINDS[prefix]] if slash else ["Agent", "Team"]
    for kind in kinds:
        record = await store.get_resource(kind, tenant, name if slash else model)
        if record is not None:
            return record
    raise _not_found(model)


def _user_session(principal: Principal, model: str, user: str) -> str:
    """The session of end user ``user`` with ``model``: hashed with the tenant (and a
    ``user`` key's own name), so two tenants' (or two user keys') users of one name
    never meet, and stable, so it continues."""
    owner = own_principal(principal)
    mark = principal.tenant if owner is None else f"{principal.tenant}\0{owner}"
    digest = hashlib.sha256(f"{mark}\0{model}\0{user}".encode()).hexdigest()
    return f"chat-{digest[:32]}"


async def _holds_history(store: Store, tenant: str, session: str) -> bool:
    """Whether ``session`` has turns already (so it remembers the conversation)."""
    record = await store.get_session(session)
    if record is None:
        return False
    if record.namespace != tenant:
        # Only a session made outside the API can clash: say it is taken, never whose.
        raise ApiError(409, "this session id is taken; choose another", param="session")
    return record.next_turn > 0


def _outcome_error(ended: Ended, limit_s: float, headers: dict[str, str]) -> ApiError:
    """Why a run gives no answer (yet), in OpenAI's error shape."""
    run, again = ended.run, "send the request again with the same Idempotency-Key"
    said = f": {run.reason}" if run.reason else ""
    if ended.unfinished:
        return ApiError(
            504, f"run {run.id} did not end within {limit_s:g} s; it goes on (GET "
            f"/v1/runs/{run.id}); {again} to wait for it again", code="run_not_finished",
            headers=headers,
        )  # fmt: skip
    if run.status in WAITING_STATUSES:
        return ApiError(
            409, f"run {run.id} waits for a person{said}; once it is decided (agentrt "
            f"approve, deny or resolve), {again} for its answer", code="run_waiting",
            headers=headers,
        )  # fmt: skip
    status = 409 if run.status == "cancelled" else 502
    return ApiError(status, f"run {run.id} {run.status}{said}", code=f"run_{run.status}",
                    headers=headers)  # fmt: skip


@router.post(
    "/chat/completions",
    summary="Create a chat completion (an Agent or Team run)",
    response_model=None,
    responses=_ANSWERS,
)
async def chat_completions(
    request: Request,
    body: ChatRequest,
    principal: Annotated[Principal, Depends(require("user"))],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    x_agentrt_session: Annotated[str | None, Header(min_length=1, max_length=253)] = None,
) -> JSONResponse | StreamingResponse:
    """Run the Agent or Team ``model`` names on the last message; answer as OpenAI."""
    ctx = server_context(request)
    store = ctx.runtime.store
    body.refuse_client_tools()
    target = await _target(store, principal.tenant, body.model)
    model = model_object(target)["id"]
    session = x_agentrt_session
    if session is None and body.user:
        session = _user_session(principal, model, body.user)
    # The store keeps a tenant's sessions under ids of the tenant's own (session_names).
    kept = stored(principal.tenant, session) if session is not None else None
    fresh = kept is None or not await _holds_history(store, principal.tenant, kept)
    text = run_input(body.messages, context=fresh)
    try:
        run = await ctx.runtime.submit(
            target.name, text, namespace=principal.tenant, session=kept,
            idempotency_key=own_idempotency_key(principal, idempotency_key),
            target_kind=target.kind, principal=principal.label, role=principal.role,
            own_session=principal.role == "user",
        )  # fmt: skip
    except SessionTaken:
        raise session_taken("session") from None
    except NotFoundError:
        raise _not_found(body.model) from None  # deleted meanwhile; never another tenant's
    headers = {"X-Agentrt-Run": run.id, "Location": f"/v1/runs/{run.id}",
               # The client must not retry on its own: a new request is a new run.
               "X-Should-Retry": "false"}  # fmt: skip
    if session is not None:
        headers["X-Agentrt-Session"] = session
    limit = ctx.limits.max_wait_s
    feed = follow_answer(store, run.id, idle_s=_KEEPALIVE_S, limit_s=limit)
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        events = _sse(feed, run.id, run.created_at, model, limit, with_usage=usage)
        sse = {**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events, media_type="text/event-stream", headers=sse)
    ended = await _end_of(feed)
    if ended.run.status != "succeeded":
        raise _outcome_error(ended, limit, headers)
    result = ended.result
    answer = completion(run.id, run.created_at, model, result.output or "", result.usage)
    return JSONResponse(answer, headers=headers)


async def _end_of(feed: AsyncGenerator[Item, None]) -> Ended:
    """How the run ends (the pieces before it are in its output)."""
    async with contextlib.aclosing(feed) as items:
        async for item in items:
            if isinstance(item, Ended):
                return item
    raise AssertionError("an answer feed ends with Ended")  # pragma: no cover


async def _sse(
    feed: AsyncGenerator[Item, None],
    run_id: str,
    created: float,
    model: str,
    limit_s: float,
    *,
    with_usage: bool,
) -> AsyncIterator[str]:
    """The answer as ``data:`` lines of chunks, ending ``data: [DONE]``; a run that
    gives no answer ends the stream with an error object, as OpenAI's does."""

    def data(body: dict[str, Any]) -> str:
        return f"data: {_json.dumps_str(body)}\n\n"

    def part(**fields: Any) -> str:
        return data(chunk(run_id, created, model, with_usage=with_usage, **fields))

    yield part(delta={"role": "assistant", "content": ""})
    # Closed on every way out, a client gone included: the watch goes with it.
    async with contextlib.aclosing(feed) as items:
        async for item in items:
            if isinstance(item, Idle):
                yield ": keep-alive\n\n"
            elif isinstance(item, Piece):
                yield part(delta={"content": item.text})
            elif item.run.status != "succeeded":
                error = _outcome_error(item, limit_s, {})
                yield data(error_body(error.status, error.message, code=error.code))
                return
            else:
                yield part(finish="stop")
                if with_usage:
                    yield data(chunk(run_id, created, model, usage=item.result.usage))
                yield "data: [DONE]\n\n"
                return


@router.get("/models", summary="List models (the tenant's Agents and Teams)")
async def list_models(request: Request, principal: Caller) -> dict[str, Any]:
    """The tenant's Agents and Teams as OpenAI ``model`` objects."""
    store = server_context(request).runtime.store
    records = [
        record
        for kind in ("Agent", "Team")
        for record in await store.list_resources(kind, principal.tenant)
    ]
    return {"object": "list", "data": [model_object(r) for r in records]}


@router.get("/models/{model:path}", summary="Get a model (an Agent or Team)")
async def get_model(request: Request, principal: Caller, model: str) -> dict[str, Any]:
    """One Agent or Team of the tenant as an OpenAI ``model``."""
    store = server_context(request).runtime.store
    return model_object(await _target(store, principal.tenant, model))
