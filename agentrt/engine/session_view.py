"""The read model of a session: its state and its turns, as the CLI and the HTTP API
show them.

A session is ``idle`` when every turn has ended, ``busy`` when one is queued or
running, and ``waiting`` when one waits for a person (that comes first: the
turns after it wait too, see :mod:`agentrt.engine.turn_order`). A turn is a run
of the session, in turn order, with its status, its answer, and whether later
turns remember it (:func:`agentrt.engine.sessions.in_history`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agentrt.engine import events as ev
from agentrt.engine.run_view import run_summary
from agentrt.engine.sessions import in_history
from agentrt.engine.turn_order import UNFINISHED_STATUSES
from agentrt.errors import NotFoundError
from agentrt.state.base import (
    ACTIVE_STATUSES,
    WAITING_STATUSES,
    RunRecord,
    SessionActivity,
    Store,
)

__all__ = ["SessionState", "SessionView", "TurnView", "list_sessions", "read_session"]

SessionState = Literal["idle", "busy", "waiting"]


def _state(active: int, waiting: int) -> SessionState:
    if waiting:
        return "waiting"
    return "busy" if active else "idle"


@dataclass(frozen=True)
class TurnView:
    """One turn of a session: its run, its answer, and whether later turns see it."""

    run: RunRecord
    output: str | None

    @property
    def in_history(self) -> bool:
        """Whether later turns of the session remember it (it ended and was kept)."""
        return in_history(self.run)

    def to_dict(self) -> dict[str, Any]:
        """The turn as JSON-ready data."""
        return {
            "turn": self.run.turn,
            "status": self.run.status,
            "output": self.output,
            "in_history": self.in_history,
            "cancel_cause": self.run.cancel_cause,
            "run": run_summary(self.run),
        }


@dataclass(frozen=True)
class SessionView:
    """A session, what its turns are doing, and (when read with them) its turns."""

    id: str
    namespace: str
    state: SessionState
    turn_count: int
    created_at: float
    updated_at: float
    parent_session: str | None = None
    parent_turn: int | None = None
    turns: tuple[TurnView, ...] = ()

    @classmethod
    def of(cls, found: SessionActivity, turns: tuple[TurnView, ...] = ()) -> SessionView:
        """The view of a session as the store lists it."""
        s = found.session
        return cls(
            s.id, s.namespace, _state(found.active, found.waiting), s.next_turn, s.created_at,
            found.updated_at, s.parent_session, s.parent_turn, turns,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The session as JSON-ready data (its turns apart: :meth:`TurnView.to_dict`)."""
        return {
            "id": self.id,
            "namespace": self.namespace,
            "state": self.state,
            "turn_count": self.turn_count,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "parent_session": self.parent_session,
            "parent_turn": self.parent_turn,
        }


async def list_sessions(
    store: Store,
    *,
    namespace: str | None = None,
    principal: str | None = None,
    before: tuple[float, str] | None = None,
    limit: int = 100,
) -> list[SessionView]:
    """Sessions (of ``namespace``, started by ``principal``), newest first, from the
    page ``before`` points after."""
    found = await store.list_sessions(
        namespace=namespace, principal=principal, before=before, limit=limit
    )
    return [SessionView.of(f) for f in found]


async def read_session(store: Store, session_id: str, *, limit: int = 1000) -> SessionView:
    """A session with its first ``limit`` turns, in turn order."""
    session = await store.get_session(session_id)
    if session is None:
        raise NotFoundError(f"session {session_id!r} not found")
    runs = await store.list_runs(session_id=session_id, limit=limit)
    turns = tuple([TurnView(run, await _output(store, run)) for run in runs])
    # The state from every unfinished turn, past ``limit`` too.
    open_ = await store.list_runs(
        session_id=session_id, statuses=UNFINISHED_STATUSES, limit=session.next_turn or 1
    )
    active = sum(r.status in ACTIVE_STATUSES for r in open_)
    waiting = sum(r.status in WAITING_STATUSES for r in open_)
    updated = max((r.updated_at for r in (*runs, *open_)), default=session.created_at)
    return SessionView.of(SessionActivity(session, active, waiting, updated), turns)


async def _output(store: Store, run: RunRecord) -> str | None:
    """A finished run's answer, from its last event (``run.finished``): one read."""
    if not run.finished or run.last_seq < 1:
        return None
    last = await store.read_events(run.id, after_seq=run.last_seq - 1)
    if not last or last[0].type != ev.RUN_FINISHED:
        return None
    output = last[0].data.get("output")
    return output if isinstance(output, str) else None
