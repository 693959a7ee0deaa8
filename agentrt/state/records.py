"""The records the store deals in: runs, events, sessions, resources, blobs, usage.

Plain frozen dataclasses, the same for every backend; :mod:`agentrt.state.base`
re-exports them with the contract.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from agentrt.state.audit import AuditDraft
from agentrt.state.budget_ledger import Amount

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "WAITING_STATUSES",
    "RUN_STATUSES",
    "Event",
    "EventDraft",
    "GcResult",
    "NewRun",
    "ResourceRecord",
    "RunBlob",
    "RunCursor",
    "RunOrder",
    "RunRecord",
    "RunStatus",
    "RunUpdate",
    "SessionActivity",
    "SessionRecord",
    "Usage",
]

RunStatus = Literal[
    "queued",  # created, not yet started by any worker
    "running",  # owned by a worker (or interrupted: the lease tells which)
    "waiting",  # needs a person: a step's outcome is unknown
    "waiting_approval",  # needs a person: a tool call waits for approval
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
    "budget_exhausted",
]
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"succeeded", "failed", "cancelled", "timed_out", "budget_exhausted"}
)
ACTIVE_STATUSES: frozenset[str] = frozenset({"queued", "running"})
WAITING_STATUSES: frozenset[str] = frozenset({"waiting", "waiting_approval"})
# Every status, in the order a run meets them (for help texts, choices and docs).
RUN_STATUSES: tuple[str, ...] = typing.get_args(RunStatus)

RunCursor = tuple[float, str]
"""Where a page of runs ended: the last run's ``(created_at, id)`` listed newest
first, its ``(updated_at, id)`` listed last updated first."""

RunOrder = Literal["newest", "updated", "turn"]
"""How runs are listed: newest first by ``(created_at, id)``, last updated first by
``(updated_at, id)``, or by turn in a session."""


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event to append: the store assigns its sequence number.

    ``step`` is the durable step the event belongs to (``None`` for run-level
    events). ``ts`` is the time the engine observed, in Unix seconds. ``audit``
    is the record of the tenant's audit log the event makes: appended in the same
    transaction, with the run's id and agent, the event's seq and ``ts`` (see
    :mod:`agentrt.state.audit`).
    """

    type: str
    data: dict[str, Any]
    ts: float
    step: int | None = None
    audit: AuditDraft | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """An event as recorded: ``(run, seq)`` is its key; ``seq`` starts at 1."""

    seq: int
    type: str
    data: dict[str, Any]
    ts: float
    step: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """What a run consumed so far."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    model_calls: int = 0
    tool_calls: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_usd + other.cost_usd,
            self.model_calls + other.model_calls,
            self.tool_calls + other.tool_calls,
        )


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    """A stored resource. ``generation`` starts at 1 and grows when the spec changes."""

    kind: str
    namespace: str
    name: str
    generation: int
    body: dict[str, Any]  # the whole resource document (apiVersion, kind, metadata, spec)
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A conversation that spans runs.

    A forked session starts from ``parent_session``'s history before turn
    ``parent_turn``; its own runs follow.
    """

    id: str
    namespace: str
    created_at: float
    parent_session: str | None = None
    parent_turn: int | None = None
    next_turn: int = 0
    principal: str | None = None  # who started it (an API key's ``key:NAME``), if known


@dataclass(frozen=True, slots=True)
class SessionActivity:
    """A session with what its runs are doing, as :meth:`Store.list_sessions` lists it.

    ``active`` counts its runs that are queued or running, ``waiting`` those that
    wait for a person; ``updated_at`` is the latest write to any of its runs (its
    creation while it has none).
    """

    session: SessionRecord
    active: int = 0
    waiting: int = 0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class NewRun:
    """What :meth:`Store.create_run` needs to create a run."""

    id: str
    namespace: str
    agent: str
    created_at: float
    session_id: str | None = None
    idempotency_key: str | None = None
    parent_run: str | None = None
    fork_step: int | None = None
    status: RunStatus = "queued"
    lease_owner: str | None = None  # create the run already leased (and running)
    lease_expires: float | None = None
    # Create it only while none of its session's runs is unfinished (else SessionBusy).
    if_session_idle: bool = False
    principal: str | None = None  # who started it (an API key's ``key:NAME``), if known
    priority: int = 0  # its priority class: the scheduler takes higher ones first

    @property
    def lease_ttl_s(self) -> float | None:
        """How long the lease it is created under lasts (``None``: created unleased)."""
        if self.lease_owner is None or self.lease_expires is None:
            return None
        return self.lease_expires - self.created_at


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as stored. ``turn`` is its 0-based position in its session.

    ``lease_token`` is the run's fencing token: how many times its lease was
    granted to an owner that did not hold it live (0: never leased). It stays
    when the lease is renewed or released, so a writer that passes the token it
    was granted (``append_events(..., token=)``) is refused once anyone, even an
    owner of the same id, was granted the lease after it.

    ``cancel_cause`` is why its cancellation was asked for, as the first asker
    said (:meth:`Store.request_cancel`); the engine says ``interrupt`` or
    ``rollback`` when a newer turn of the run's session superseded it.
    ``principal`` is who started the run (``None``: nobody known, e.g. the CLI);
    ``cancel_by`` who first asked for its cancellation, if they said, and
    ``cancel_at`` when (set with ``cancel_requested``).
    """

    id: str
    namespace: str
    agent: str
    status: RunStatus
    created_at: float
    updated_at: float
    session_id: str | None = None
    turn: int | None = None
    reason: str | None = None
    finished_at: float | None = None
    idempotency_key: str | None = None
    parent_run: str | None = None
    fork_step: int | None = None
    lease_owner: str | None = None
    lease_expires: float | None = None
    lease_token: int = 0
    cancel_requested: bool = False
    last_seq: int = 0
    usage: Usage = field(default_factory=Usage)
    cancel_cause: str | None = None
    principal: str | None = None
    cancel_by: str | None = None
    cancel_at: float | None = None
    priority: int = 0

    @property
    def finished(self) -> bool:
        """True once the run reached a terminal status."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """A change to a run's row, applied in the same transaction as an append.

    ``usage`` is added to the run's counters, not assigned. ``finished_at`` is
    set by the store when ``status`` is terminal. With ``status`` given,
    ``reason`` replaces the stored reason (``None`` clears it: a run that goes on
    after waiting no longer shows why it waited); without, a ``reason`` given is
    set and ``None`` keeps the stored one.

    ``settles`` are budget reservations the appended events record the outcome of:
    each ``(reservation id, actual amount)`` is settled in the same transaction
    (see :meth:`Store.settle_budget`), so the ledger counts a step exactly when its
    result is in the log. A terminal ``status`` releases every reservation the
    run still holds, in that transaction too.
    """

    status: RunStatus | None = None
    reason: str | None = None
    usage: Usage | None = None
    settles: tuple[tuple[str, Amount], ...] = ()


@dataclass(frozen=True, slots=True)
class GcResult:
    """What a garbage collection removed.

    ``run_ids`` names every run removed, so a caller cleans up what it keeps
    beside the store (scratch directories) without listing the runs left.
    """

    run_ids: tuple[str, ...]
    events: int
    blobs: int
    sessions: int

    @property
    def runs(self) -> int:
        """How many runs were removed."""
        return len(self.run_ids)


@dataclass(frozen=True, slots=True)
class RunBlob:
    """A blob a run refers to: its ``name`` (e.g. ``"scratch"``) as of step ``step``.

    ``digest`` is the SHA-256 of the blob's bytes, in hex; the store keeps the
    bytes once however many runs refer to them, and while any run or event does.
    """

    run_id: str
    name: str
    step: int
    digest: str
    size: int
