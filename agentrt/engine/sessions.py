"""A session's earlier turns, read from the store: what a new turn of it remembers."""

from __future__ import annotations

from collections import OrderedDict

from agentrt.engine.conversation import conversation_of
from agentrt.engine.history_policy import Turn
from agentrt.engine.summaries import summary_of
from agentrt.state.base import Store

__all__ = ["SessionTurns"]

_CACHE_SIZE = 2048


class SessionTurns:
    """The succeeded turns of sessions, each read once (finished runs never change)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._turns: OrderedDict[str, Turn] = OrderedDict()

    async def turn_of(self, run_id: str) -> Turn:
        """A finished run as a session turn."""
        cached = self._turns.get(run_id)
        if cached is not None:
            self._turns.move_to_end(run_id)
            return cached
        events = await self._store.read_events(run_id)
        turn = Turn(run_id, conversation_of(events), summary_of(events))
        self._turns[run_id] = turn
        if len(self._turns) > _CACHE_SIZE:
            self._turns.popitem(last=False)
        return turn

    async def before(self, session_id: str | None, turn: int | None) -> list[Turn]:
        """A session's succeeded turns before ``turn`` (a fork's parent turns first)."""
        if session_id is None:
            return []
        turns = await self._parent_turns(session_id)
        if not turn:
            return turns
        runs = await self._store.list_runs(
            session_id=session_id, statuses=["succeeded"], limit=turn
        )
        for run in runs:
            if run.turn is not None and run.turn < turn:
                turns.append(await self.turn_of(run.id))
        return turns

    async def _parent_turns(self, session_id: str) -> list[Turn]:
        session = await self._store.get_session(session_id)
        if session is None or session.parent_session is None:
            return []
        return await self.before(session.parent_session, session.parent_turn)
