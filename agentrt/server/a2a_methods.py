"""What each A2A method does with one Agent of the caller's tenant: a message starts
a run (or continues a session), and the tasks are its runs.

``SendMessage`` (``message/send``) starts a run of the Agent with the message's
text. The message's id makes the run's idempotency key
(:func:`~agentrt.server.a2a_tasks.message_key`), so a message sent again gives
its task again. Its ``contextId`` is the session the run is a turn of: one the
tenant has, or a new one of that id; without one, the run gets a context of its
own, named from the message's id (so a repeat makes no second one). It waits
until the task ends or needs input (at most the server's longest wait), unless
``returnImmediately`` (0.3: ``blocking: false``). ``CancelTask`` is a hard
cancel of the run. ``GetTask``, ``ListTasks`` and ``SubscribeToTask`` read the
store, so any replica answers for any run; ``ListTasks`` reads one page of it
(the last updated first) and counts the rest there. A run records the key that
started it: a task of another agent or tenant, and for a ``user`` key one another
key started, does not exist here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from fastapi.responses import StreamingResponse

from agentrt import _json
from agentrt.errors import ConflictError
from agentrt.server.a2a_stream import task_stream
from agentrt.server.a2a_tasks import (
    STATES,
    TaskView,
    message_key,
    row_view,
    statuses_of,
    task_of,
)
from agentrt.server.a2a_wire import (
    CONTENT_TYPE_NOT_SUPPORTED,
    INVALID_PARAMS,
    LEGACY,
    TASK_NOT_CANCELABLE,
    UNSUPPORTED,
    V1,
    Dialect,
    Incoming,
    RpcError,
    parse_list,
    parse_send,
    parse_task_ref,
    task_not_found,
)
from agentrt.server.context import ServerContext
from agentrt.server.keys import Principal, Role
from agentrt.server.ownership import own_idempotency_key, own_principal, sees
from agentrt.server.problems import ApiError
from agentrt.server.session_names import stored
from agentrt.state.records import RunCursor, RunRecord

__all__ = ["HANDLERS", "Call", "Handler"]

CANCEL_WAIT_S: Final = 5.0  # how long CancelTask waits for the run to end cancelled
_SSE_HEADERS: Final = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
_TAKEN: Final = "this contextId is taken; leave it out for a new context, or choose another"


@dataclass(frozen=True)
class Call:
    """One JSON-RPC call to the endpoint of ``agent``."""

    ctx: ServerContext
    principal: Principal
    agent: str
    rpc_id: Any
    params: Any
    dialect: Dialect

    def need(self, role: Role) -> None:
        """Refuse (403) a key whose role is below ``role``."""
        if not self.principal.may(role):
            raise ApiError(
                403, f"this needs the {role} role; the key {self.principal.name!r} is "
                f"{self.principal.role}",
            )  # fmt: skip


Handler = Callable[[Call], Awaitable[dict[str, Any] | StreamingResponse]]


async def _run_of(call: Call, task_id: str) -> RunRecord:
    """The task's run: the agent's, one the caller may know of (its tenant's; for a
    ``user`` key, one it started); not found otherwise."""
    run = await call.ctx.runtime.store.get_run(task_id)
    if run is None or not sees(call.principal, run) or run.agent != call.agent:
        raise task_not_found()
    return run


async def _view(call: Call, run: RunRecord) -> TaskView:
    return task_of(run, await call.ctx.runtime.store.read_events(run.id))


def _accepts_text(modes: tuple[str, ...]) -> bool:
    return not modes or any(m in ("text/plain", "text/*", "*/*", "text") for m in modes)


async def _context(call: Call, incoming: Incoming) -> str:
    """The session the message's run is a turn of."""
    tenant = call.principal.tenant
    owner = own_principal(call.principal)
    context = incoming.context_id
    if context is None:
        # Named from the message, so a message sent again makes no second context.
        sender = "" if owner is None else f"{owner}/"
        name = f"agentrt:a2a:{tenant}/{call.agent}/{sender}{incoming.message_id}"
        context = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    # The store keeps a tenant's sessions under ids of the tenant's own (session_names).
    kept = stored(tenant, context)
    record = await call.ctx.runtime.store.get_session(kept)
    if record is not None and (record.namespace != tenant or owner not in (None, record.principal)):
        raise RpcError(INVALID_PARAMS, _TAKEN)  # never whose
    return kept


async def _start(call: Call) -> tuple[RunRecord, Incoming]:
    """The run a sent message starts (or started, when it was sent before)."""
    call.need("user")
    incoming = parse_send(call.params, call.dialect)
    if not _accepts_text(incoming.accepted_output_modes):
        raise RpcError(CONTENT_TYPE_NOT_SUPPORTED, "this agent answers in text/plain only")
    if incoming.task_id is not None:
        run = await _run_of(call, incoming.task_id)
        state = STATES[run.status]
        raise RpcError(
            UNSUPPORTED,
            f"the task is {state}; a task takes one message: send the next one with the "
            "task's contextId and no taskId, as the next turn of the conversation",
        )
    context = await _context(call, incoming)
    try:
        run = await call.ctx.runtime.submit(
            call.agent, incoming.text, namespace=call.principal.tenant, session=context,
            idempotency_key=own_idempotency_key(
                call.principal, message_key(call.agent, incoming.message_id)
            ),
            target_kind="Agent", principal=call.principal.label, role=call.principal.role,
            own_session=call.principal.role == "user",
        )  # fmt: skip
    except ConflictError:  # another key or tenant made the session since it was looked at
        raise RpcError(INVALID_PARAMS, _TAKEN) from None
    return run, incoming


async def send_message(call: Call) -> dict[str, Any]:
    """``SendMessage``: start the run; answer with its task when it ends or waits."""
    run, incoming = await _start(call)
    if not incoming.return_immediately:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(call.ctx.limits.max_wait_s):
                await call.ctx.runtime.wait(run.id)
    task = call.dialect.task(await _view(call, run), history=incoming.history_length)
    return call.dialect.sent(task)


def _stream(call: Call, run: RunRecord, *, end_if_waiting: bool) -> StreamingResponse:
    frames = task_stream(
        call.ctx.runtime.store, run, call.dialect, call.rpc_id, end_if_waiting=end_if_waiting
    )
    return StreamingResponse(frames, media_type="text/event-stream", headers=_SSE_HEADERS)


async def send_streaming_message(call: Call) -> StreamingResponse:
    """``SendStreamingMessage``: start the run; stream its task from the event log."""
    run, _ = await _start(call)
    return _stream(call, run, end_if_waiting=True)


async def subscribe_to_task(call: Call) -> StreamingResponse:
    """``SubscribeToTask``: stream a task that has not ended."""
    task_id, _ = parse_task_ref(call.params)
    run = await _run_of(call, task_id)
    if run.finished:
        raise RpcError(
            UNSUPPORTED, f"the task is {STATES[run.status]}: read it with GetTask instead"
        )
    return _stream(call, run, end_if_waiting=False)


async def get_task(call: Call) -> dict[str, Any]:
    """``GetTask``: the task as its run's log has it."""
    task_id, history = parse_task_ref(call.params)
    run = await _run_of(call, task_id)
    return call.dialect.task(await _view(call, run), history=history)


async def cancel_task(call: Call) -> dict[str, Any]:
    """``CancelTask``: cancel the run (hard: its tool sandboxes stop too)."""
    call.need("user")
    task_id, _ = parse_task_ref(call.params)
    run = await _run_of(call, task_id)
    if not run.finished:
        run = await call.ctx.runtime.cancel(run.id, wait_s=CANCEL_WAIT_S)
    if run.finished and run.status != "cancelled":
        raise RpcError(TASK_NOT_CANCELABLE, f"the task is already {STATES[run.status]}")
    return call.dialect.task(await _view(call, run))


def _token(run: RunRecord) -> str:
    raw = _json.dumps_str([run.updated_at, run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after_token(token: str) -> RunCursor:
    """The position, last updated first, a ``nextPageToken`` names."""
    try:
        at, run_id = _json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        # A NUL no store holds: a token never names a run id with one.
        named = isinstance(run_id, str) and "\x00" not in run_id
        if isinstance(at, int | float) and named:  # JSON has no NaN nor infinity
            return float(at), run_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise RpcError(INVALID_PARAMS, "params.pageToken: give a nextPageToken as given")


async def list_tasks(call: Call) -> dict[str, Any]:
    """``ListTasks``: the agent's tasks in the tenant (a ``user`` key's: those it
    started), the last updated first by ``(updated_at, id)``, one page read from the
    store, and how many there are in all."""
    query = parse_list(call.params)
    before = _after_token(query.page_token) if query.page_token else None
    tenant = call.principal.tenant
    context = stored(tenant, query.context_id) if query.context_id else None
    statuses = None if query.state is None else statuses_of(query.state)  # [] matches none
    mine = own_principal(call.principal)  # a user key lists only its own tasks
    store = call.ctx.runtime.store
    runs = await store.list_runs(
        namespace=tenant, agent=call.agent, session_id=context, statuses=statuses,
        principal=mine, updated_after=query.updated_after, order="updated", before=before,
        limit=query.page_size + 1,
    )  # fmt: skip
    total = await store.count_runs(
        namespace=tenant, agent=call.agent, session_id=context, statuses=statuses,
        principal=mine, updated_after=query.updated_after,
    )  # fmt: skip
    page = runs[: query.page_size]
    with_log = query.include_artifacts or bool(query.history_length)
    tasks = [
        V1.task(
            await _view(call, r) if with_log else row_view(r),
            history=query.history_length or 0, artifacts=query.include_artifacts,
        )
        for r in page
    ]  # fmt: skip
    more = len(runs) > len(page)
    return {"tasks": tasks, "nextPageToken": _token(page[-1]) if more else "",
            "pageSize": query.page_size, "totalSize": total}  # fmt: skip


HANDLERS: Final[dict[str, tuple[Dialect, Handler]]] = {
    "SendMessage": (V1, send_message),
    "SendStreamingMessage": (V1, send_streaming_message),
    "GetTask": (V1, get_task),
    "ListTasks": (V1, list_tasks),
    "CancelTask": (V1, cancel_task),
    "SubscribeToTask": (V1, subscribe_to_task),
    # The same methods by their 0.3 names, answered in 0.3's JSON (0.3 could not list).
    "message/send": (LEGACY, send_message),
    "message/stream": (LEGACY, send_streaming_message),
    "tasks/get": (LEGACY, get_task),
    "tasks/cancel": (LEGACY, cancel_task),
    "tasks/resubscribe": (LEGACY, subscribe_to_task),
}
"""The methods by name: the dialect each answers in, and what does it."""
