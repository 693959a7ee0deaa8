"""A task followed as server-sent events, read from its run's event log.

The stream is the log, not this process's memory: it starts with the task as
the log has it, then reads each later event as the store's watch reports a
write to the run (a write by any process, so the run may execute on any
worker and the stream be served by any replica), and sends an update where
an event changes the task: its status, and its answer as an artifact just
before it completes. No update is sent twice or out of order, because each is
the fold of the log up to one event, whose sequence number is the SSE ``id``.

It ends when the task does (completed, failed, canceled) or, unless it began
there, when the task comes to need input: the protocol's SDKs end a stream at
such an interrupted state too. While nothing happens, a comment every 15
seconds keeps proxies from closing the connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Final

from agentrt import _json
from agentrt.errors import StoreError
from agentrt.server.a2a_tasks import INTERRUPTED, TaskFold, TaskView
from agentrt.server.a2a_wire import INTERNAL_ERROR, Dialect
from agentrt.state.base import Store
from agentrt.state.records import RunRecord

__all__ = ["KEEPALIVE_S", "task_stream"]

log = logging.getLogger(__name__)

KEEPALIVE_S: Final = 15.0


def _frame(rpc_id: Any, seq: int | None, item: dict[str, Any], key: str = "result") -> bytes:
    body = _json.dumps_str({"jsonrpc": "2.0", "id": rpc_id, key: item})
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}data: {body}\n\n".encode()


def _updates(dialect: Dialect, before: TaskView, after: TaskView) -> list[dict[str, Any]]:
    """What the stream sends for one event: nothing, or a status update (the answer first)."""
    if after.state == before.state and after.note == before.note:
        return []
    items = []
    if after.state == "completed" and after.answer is not None:
        items.append(dialect.artifact_item(after))
    items.append(dialect.status_item(after))
    return items


async def task_stream(
    store: Store, run: RunRecord, dialect: Dialect, rpc_id: Any, *, end_if_waiting: bool
) -> AsyncIterator[bytes]:
    """The SSE frames of task ``run``: the task, then its updates until it ends.

    ``end_if_waiting``: end at once when the task already needs input (a sent
    message whose task waits); otherwise a stream begun there goes on until the
    task ends or needs input again.
    """
    try:
        async with store.watch() as watch:
            fold = TaskFold(run)
            for event in await store.read_events(run.id):
                fold.add(event)
            view = fold.view
            yield _frame(rpc_id, view.seq, dialect.task_item(view))
            if view.terminal or (end_if_waiting and view.state in INTERRUPTED):
                return
            while True:
                if not await watch.changed({run.id}, timeout=KEEPALIVE_S):
                    yield b": keep-alive\n\n"
                    continue
                events = await store.read_events(run.id, after_seq=fold.seq)
                if not events and await store.get_run(run.id) is None:
                    return  # collected while followed: nothing more will come
                for event in events:
                    before = fold.view
                    fold.add(event)
                    after = fold.view
                    for item in _updates(dialect, before, after):
                        yield _frame(rpc_id, event.seq, item)
                    came_to_wait = after.state in INTERRUPTED and before.state != after.state
                    if after.terminal or came_to_wait:
                        return
    except StoreError as exc:
        log.warning("an A2A stream of run %s ends: the store failed: %s", run.id, exc)
        error = {"code": INTERNAL_ERROR, "message": "the store does not answer; subscribe again"}
        yield _frame(rpc_id, None, error, key="error")
