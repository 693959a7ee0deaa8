"""A2A tasks as agentrt keeps them: one task is one run, its state read from the run's log.

A task's id is its run's id; its ``contextId`` is the run's session (a run
without one is a context of its own: its id). Its state follows the run's
status:

| run | task |
|---|---|
| `queued` | `submitted` |
| `running` | `working` |
| `waiting`, `waiting_approval` | `input-required` (the status message says what is awaited) |
| `succeeded` | `completed` (the answer is an artifact) |
| `failed`, `timed_out`, `budget_exhausted` | `failed` |
| `cancelled` | `canceled` |

The same state is reached by folding the run's events in order
(:class:`TaskFold`), which is how a stream follows a task from the event log on
any replica, each update at the event that made it. States are spelt here as
in protocol 0.3 (``input-required``); each wire dialect spells them its own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from agentrt.engine import events as ev
from agentrt.server.ownership import OWNER_MARK
from agentrt.server.session_names import shown
from agentrt.state.records import Event, RunRecord, RunStatus

__all__ = [
    "INTERRUPTED",
    "KEY_PREFIX",
    "STATES",
    "TERMINAL",
    "State",
    "TaskFold",
    "TaskView",
    "message_key",
    "row_view",
    "statuses_of",
    "task_of",
]

State = Literal["submitted", "working", "input-required", "completed", "failed", "canceled"]

STATES: Final[dict[RunStatus, State]] = {
    "queued": "submitted",
    "running": "working",
    "waiting": "input-required",
    "waiting_approval": "input-required",
    "succeeded": "completed",
    "failed": "failed",
    "timed_out": "failed",
    "budget_exhausted": "failed",
    "cancelled": "canceled",
}
TERMINAL: Final[frozenset[State]] = frozenset({"completed", "failed", "canceled"})
INTERRUPTED: Final[frozenset[State]] = frozenset({"input-required"})

KEY_PREFIX: Final = "a2a/"
"""A message sent over A2A starts its run with the idempotency key
``a2a/AGENT/MESSAGE_ID``: the same message to the same agent of a tenant never
starts a second run, and the task's history shows the message's own id."""


def message_key(agent: str, message_id: str) -> str:
    """The idempotency key of the run that message ``message_id`` to ``agent`` starts."""
    return f"{KEY_PREFIX}{agent}/{message_id}"


def statuses_of(state: str) -> list[RunStatus]:
    """The run statuses a task in ``state`` may have (none for ``rejected``)."""
    return [status for status, s in STATES.items() if s == state]


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task at one point of its run's log (or as its row says, for a list).

    ``note`` is the status message: why the task waits, failed or was cancelled.
    ``question`` and ``answer`` are the user's message and the agent's reply,
    ``None`` when unknown (a view of the row alone) or not given yet.
    """

    id: str
    context_id: str
    state: State
    updated: float
    note: str | None
    question_id: str
    question: str | None
    answer: str | None
    seq: int

    @property
    def terminal(self) -> bool:
        """Whether the task ended (completed, failed, canceled)."""
        return self.state in TERMINAL


def _question_id(run: RunRecord) -> str:
    """The id of the message that started the run: its own, when A2A sent it."""
    prefix = message_key(run.agent, "")
    key = run.idempotency_key
    if key is not None:
        key = key.rpartition(OWNER_MARK)[2]  # a user key's: its own space
    if key is not None and key.startswith(prefix) and len(key) > len(prefix):
        return key[len(prefix) :]
    return f"{run.id}-input"


def row_view(run: RunRecord) -> TaskView:
    """The task as its run's row says, without reading the log (no messages)."""
    return TaskView(
        run.id, shown(run.namespace, run.session_id) or run.id, STATES[run.status],
        run.updated_at, run.reason,
        _question_id(run), None, None, run.last_seq,
    )  # fmt: skip


class TaskFold:
    """A task's state built event by event from its run's log.

    Mirrors the run's status as the store changes it: created ``queued``,
    ``running`` when started (or resumed, or decided on), waiting from
    ``run.waiting`` until the last pending approval is decided, and the status
    ``run.finished`` records.
    """

    def __init__(self, run: RunRecord) -> None:
        self.run = run
        self._status: RunStatus = "queued"
        self._updated = run.created_at
        self._note: str | None = None
        self._question: str | None = None
        self._answer: str | None = None
        self._pending: set[int] = set()
        self.seq = 0

    def add(self, event: Event) -> None:
        """Take the next event of the log into account."""
        self.seq = event.seq
        data = event.data
        if event.type == ev.RUN_CREATED:
            self._question = str(data.get("input", ""))
            self._updated = event.ts
        elif event.type == ev.RUN_STARTED:
            self._set("running", event.ts, None)
        elif event.type == ev.RUN_WAITING:
            self._pending = {int(s) for s in data.get("approval") or ()}
            self._set("waiting", event.ts, data.get("reason"))
        elif event.type == ev.APPROVAL_DECIDED:
            self._pending.discard(event.step or 0)
            if not self._pending and self._status in ("waiting", "waiting_approval"):
                self._set("running", event.ts, None)
        elif event.type == ev.TOOL_DECISION:
            self._set("running", event.ts, None)
        elif event.type == ev.RUN_FINISHED:
            self._answer = data.get("output")
            self._set(data.get("status", "failed"), event.ts, data.get("reason"))

    def _set(self, status: RunStatus, ts: float, note: str | None) -> None:
        if STATES[status] != STATES[self._status] or note != self._note:
            self._updated = ts
        self._status, self._note = status, note

    @property
    def view(self) -> TaskView:
        """The task as the events taken so far leave it."""
        run = self.run
        answer = self._answer if self._status == "succeeded" else None
        return TaskView(
            run.id, shown(run.namespace, run.session_id) or run.id, STATES[self._status],
            self._updated, self._note,
            _question_id(run), self._question, answer, self.seq,
        )  # fmt: skip


def task_of(run: RunRecord, events: list[Event]) -> TaskView:
    """The task as the whole log read leaves it."""
    fold = TaskFold(run)
    for event in events:
        fold.add(event)
    return fold.view
