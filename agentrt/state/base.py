"""The storage contract every backend implements, and the records it deals in.

The contract is small on purpose: resources, sessions, runs with leases, an
append-only event log per run, and garbage collection. Large event payloads are
stored once in a content-addressed blob table by the backend itself; callers
only ever see whole events.

A store opens from a URL with :meth:`Store.from_url` (``await`` it, or
``async with`` it to close it on exit). Backends also take what the caller
already has: the SQLite store a ``sqlite3`` connection or a function that makes
one (``SqliteStore.open(connection=...)``); the PostgreSQL store will take a
``psycopg_pool.AsyncConnectionPool`` the same way, lending one of its
connections to each operation and leaving the pool open on close.

Every backend must pass ``tests/state/conformance.py`` unchanged.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Generator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from agentrt.state.watch import RunWatch

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "WAITING_STATUSES",
    "RUN_STATUSES",
    "Event",
    "EventDraft",
    "GcResult",
    "NewRun",
    "Opening",
    "ResourceRecord",
    "RunRecord",
    "RunStatus",
    "RunUpdate",
    "SessionRecord",
    "Store",
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


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event to append: the store assigns its sequence number.

    ``step`` is the durable step the event belongs to (``None`` for run-level
    events). ``ts`` is the time the engine observed, in Unix seconds.
    """

    type: str
    data: dict[str, Any]
    ts: float
    step: int | None = None


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


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as stored. ``turn`` is its 0-based position in its session."""

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
    cancel_requested: bool = False
    last_seq: int = 0
    usage: Usage = field(default_factory=Usage)

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
    """

    status: RunStatus | None = None
    reason: str | None = None
    usage: Usage | None = None


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


class _Closable(Protocol):
    async def close(self) -> None: ...


S_co = TypeVar("S_co", bound=_Closable, covariant=True)


class Opening(Generic[S_co]):
    """A store being opened: ``await`` it for the open store, or ``async with`` it to
    have the store closed on exit."""

    def __init__(self, open_: Callable[[], Awaitable[S_co]]) -> None:
        """Wrap ``open_``, the coroutine function that opens the store (called once)."""
        self._open = open_
        self._store: _Closable | None = None

    def __await__(self) -> Generator[Any, None, S_co]:
        return self._open().__await__()

    async def __aenter__(self) -> S_co:
        store = await self._open()
        self._store = store
        return store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()


@runtime_checkable
class Store(Protocol):
    """Durable state of the runtime. All methods are coroutines; all writes are atomic."""

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> Opening[Store]:
        """Open the store a URL names, with the backend its scheme names.

        On ``Store`` itself it picks the backend; on a backend's class it takes
        that backend's URLs only (``SqliteStore.from_url("sqlite:///...")``).

        Args:
            url: ``sqlite:///abs/path.db`` or a plain file path for SQLite;
                ``postgresql://...`` is reserved.
            read_only: Only read: create, migrate and write nothing.

        Returns:
            ``await`` it for the open store, or ``async with`` it to close the
            store on exit.

        Raises:
            UsageError: The URL names an unsupported or unavailable backend.
        """
        from agentrt.state import open_store  # the backends live above this contract

        return open_store(url, read_only=read_only)

    @property
    def local_dir(self) -> Path | None:
        """The directory on this host that holds the store's files, or ``None`` when it
        has none here (in memory, on a database server).

        Files that belong beside the store (run scratch directories) go there.
        """
        ...

    async def close(self) -> None:
        """Flush and release connections. Idempotent."""

    def watch(self) -> AbstractAsyncContextManager[RunWatch]:
        """Open a watch on the store's runs: ``async with store.watch() as w``, then
        ``await w.changed(run_ids, timeout)`` instead of reading on a timer.

        Every write to a run wakes it: a run created, an append (and its update),
        a lease taken, claimed or given up, a cancellation requested, a run
        deleted by gc; renewing a lease does not. Writes by other processes too
        (SQLite: a kernel notification on the database's log; PostgreSQL:
        ``LISTEN``/``NOTIFY``). While nothing is written, a watch reads nothing.
        See :mod:`agentrt.state.watch`.
        """
        ...

    # --- resources -------------------------------------------------------------
    async def put_resource(
        self, kind: str, namespace: str, name: str, body: dict[str, Any], *, now: float
    ) -> ResourceRecord:
        """Insert or update a resource.

        The generation is 1 on insert, unchanged when ``body`` equals the stored
        body, and incremented otherwise.
        """
        ...

    async def get_resource(self, kind: str, namespace: str, name: str) -> ResourceRecord | None:
        """The resource, or ``None``."""
        ...

    async def list_resources(
        self, kind: str | None = None, namespace: str | None = None
    ) -> list[ResourceRecord]:
        """Resources filtered by kind and namespace, ordered by (kind, namespace, name)."""
        ...

    async def delete_resource(self, kind: str, namespace: str, name: str) -> bool:
        """Delete a resource; ``True`` if it existed."""
        ...

    # --- sessions --------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> SessionRecord:
        """Create a session; if the id exists already, return the stored one unchanged."""
        ...

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session, or ``None``."""
        ...

    # --- runs ------------------------------------------------------------------
    async def create_run(
        self, run: NewRun, events: Sequence[EventDraft] = ()
    ) -> tuple[RunRecord, bool]:
        """Create a run and append its first events in one transaction.

        When ``run.session_id`` is set, the session must exist; the run takes the
        session's next turn number and the session's ``next_turn`` is incremented.
        With ``run.lease_owner`` the run is created ``running`` and leased to that
        owner until ``run.lease_expires``, saving a separate ``acquire_lease``.
        When ``run.idempotency_key`` is set and a run of the same namespace has
        that key, nothing is written and ``(existing_run, False)`` is returned;
        otherwise ``(new_run, True)``.
        """
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None``."""
        ...

    async def list_runs(
        self,
        *,
        namespace: str | None = None,
        session_id: str | None = None,
        parent: str | None = None,
        statuses: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs, newest first; with ``session_id``, ordered by turn ascending instead.

        With ``parent``, only the runs whose ``parent_run`` it is: its child runs
        and its forks (a fork has a ``fork_step``, a child none). Every filter is
        served by an index, so listing one run's children never scans the others.
        """
        ...

    async def append_events(
        self,
        run_id: str,
        events: Sequence[EventDraft],
        *,
        expected_seq: int,
        owner: str | None = None,
        update: RunUpdate | None = None,
    ) -> int:
        """Append events after ``expected_seq`` and apply ``update``, atomically.

        Both are conditional writes, checked in the same transaction: the append
        is a compare-and-set on the run's last seq and, with ``owner``, on its
        lease. A terminal ``update.status`` also releases the run's lease.

        Returns the new last sequence number. Raises ``LeaseLost`` when the run's
        last seq is not ``expected_seq`` or, when ``owner`` is given, when the
        run's lease is not ``owner``'s (held by someone else, or by nobody).
        Raises ``CancelRequested`` when the run's cancellation was requested and
        ``update`` does not end it ``cancelled``: once a cancel is acknowledged
        the run never takes another step and never ends otherwise. Raises
        ``NotFoundError`` for an unknown run. Nothing is written when it raises.
        Payloads over the backend's inline limit go to the blob table, keyed by
        their SHA-256, stored once however often they recur.
        """
        ...

    async def read_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """Events with ``seq > after_seq``, in order, with payloads resolved."""
        ...

    # --- leases and cancellation -----------------------------------------------
    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        ttl_s: float,
        *,
        now: float,
        replacing: str | None = None,
    ) -> RunRecord | None:
        """Take the run's lease if free, expired, already ``owner``'s, or held by
        ``replacing``.

        ``replacing`` is the holder the caller read and knows to be dead (its
        process is gone): the takeover is a compare-and-set on the holder, so a
        decision made on a stale read never takes the lease from a live owner
        that took it meanwhile. Owner ids are never reused, so they fence.

        Only non-terminal runs can be leased; a ``queued`` run becomes
        ``running``. Returns the updated run, or ``None`` if the lease is held by
        another live owner (or the run is finished or unknown).
        """
        ...

    async def renew_lease(self, run_id: str, owner: str, ttl_s: float, *, now: float) -> bool:
        """Extend the lease; ``False`` if ``owner`` no longer holds it."""
        ...

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Give the lease up (no-op unless ``owner`` holds it)."""
        ...

    async def claim_runs(
        self, owner: str, ttl_s: float, *, now: float, limit: int = 10
    ) -> list[RunRecord]:
        """Lease up to ``limit`` runs that are queued or running with no live lease.

        Oldest first. Each claimed run is ``running`` and leased to ``owner``.
        Two concurrent callers never claim the same run.
        """
        ...

    async def request_cancel(self, run_id: str) -> RunRecord:
        """Mark the run for cancellation; the owning worker ends it. Returns the run.

        From then on :meth:`append_events` refuses every write to the run but its
        ``cancelled`` end. A finished run is returned unchanged.
        """
        ...

    async def cancel_requests(self, run_ids: Sequence[str]) -> set[str]:
        """Which of ``run_ids`` are unfinished and have their cancellation requested.

        Owners poll it for the runs they execute, so it must be cheap: one
        indexed lookup per id. Unknown ids are ignored.
        """
        ...

    # --- quotas -----------------------------------------------------------------
    async def count_tool_calls(
        self,
        *,
        namespace: str,
        tool: str,
        session_id: str | None = None,
        since: float | None = None,
    ) -> int:
        """How many calls of Tool resource ``tool`` runs of ``namespace`` recorded.

        A call is a ``tool.call`` event whose data has ``"toolset": tool`` (the
        Tool resource's name; one resource may offer several tools), appended
        with :meth:`append_events`. With ``session_id`` only runs of that session
        count; with ``since`` only events with ``ts >= since``.

        Events passed to :meth:`create_run` are not counted: they are copies of
        calls another run made (a fork's shared steps, an imported log), and
        counting them again would charge one external call twice. Calls of runs
        deleted by :meth:`gc` no longer count.
        """
        ...

    # --- maintenance ------------------------------------------------------------
    async def gc(self, *, finished_before: float) -> GcResult:
        """Delete runs that finished before the given time, their events, sessions
        left with no runs, and blobs no event references; reclaim the space.

        The result names the removed runs (``GcResult.run_ids``), found through
        an index on the finish time: gc never reads the runs it keeps.
        """
        ...
