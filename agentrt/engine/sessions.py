"""A session's earlier turns, read from the store: what a new turn of it remembers.

A turn remembers every earlier turn that succeeded, and every earlier turn a
newer one interrupted (double-texting policy ``interrupt``): what it recorded
until it was cancelled, its user message first. A tool call it had asked for
but not seen the result of (cut off mid-call, or waiting for approval) is
answered in the history by :data:`INTERRUPTED_CALL`, as a model API wants every
call answered. Turns that failed, were cancelled otherwise, or were rolled back
(``rollback``) are not remembered.
"""

from __future__ import annotations

from collections import OrderedDict

from agentrt.engine.conversation import conversation_of
from agentrt.engine.history_policy import Turn
from agentrt.engine.replicas import placements
from agentrt.engine.summaries import summary_of
from agentrt.models.base import Message
from agentrt.state.base import RunRecord, Store

__all__ = ["INTERRUPTED_CALL", "SessionTurns", "answered", "in_history"]

INTERRUPTED_CALL = "not run: the turn was interrupted by a newer message"
"""The result an interrupted turn's unanswered tool call has in the session's history."""


def in_history(run: RunRecord) -> bool:
    """Whether later turns of its session remember this finished run."""
    return run.status == "succeeded" or (
        run.status == "cancelled" and run.cancel_cause == "interrupt"
    )


def answered(messages: list[Message]) -> list[Message]:
    """``messages`` with every tool call that has no result answered by
    :data:`INTERRUPTED_CALL`, right after the calls' other results."""
    out: list[Message] = []
    waiting: list[str] = []  # calls of the latest assistant message not answered yet

    def close() -> None:
        out.extend(
            {"role": "tool", "tool_call_id": i, "content": INTERRUPTED_CALL} for i in waiting
        )
        waiting.clear()

    for message in messages:
        if message.get("role") == "tool":
            if message.get("tool_call_id") in waiting:
                waiting.remove(str(message.get("tool_call_id")))
        else:
            close()
        out.append(message)
        if message.get("role") == "assistant":
            waiting.extend(str(c.get("id")) for c in message.get("tool_calls") or ())
    close()
    return out


_CACHE_SIZE = 2048


class SessionTurns:
    """The remembered turns of sessions, each read once (finished runs never change)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._turns: OrderedDict[str, Turn] = OrderedDict()

    async def turn_of(self, run_id: str, *, interrupted: bool = False) -> Turn:
        """A finished run as a session turn (``interrupted``: cut off by a newer one)."""
        cached = self._turns.get(run_id)
        if cached is not None:
            self._turns.move_to_end(run_id)
            return cached
        events = await self._store.read_events(run_id)
        messages = conversation_of(events)
        turn = Turn(
            run_id,
            answered(messages) if interrupted else messages,
            summary_of(events),
            placements(events),
        )
        self._turns[run_id] = turn
        if len(self._turns) > _CACHE_SIZE:
            self._turns.popitem(last=False)
        return turn

    async def before(self, session_id: str | None, turn: int | None) -> list[Turn]:
        """A session's remembered turns before ``turn`` (a fork's parent turns first)."""
        if session_id is None:
            return []
        turns = await self._parent_turns(session_id)
        if not turn:
            return turns
        runs = await self._store.list_runs(
            session_id=session_id, statuses=["succeeded", "cancelled"], limit=turn
        )
        for run in runs:
            if run.turn is not None and run.turn < turn and in_history(run):
                turns.append(await self.turn_of(run.id, interrupted=run.status == "cancelled"))
        return turns

    async def _parent_turns(self, session_id: str) -> list[Turn]:
        session = await self._store.get_session(session_id)
        if session is None or session.parent_session is None:
            return []
        return await self.before(session.parent_session, session.parent_turn)
