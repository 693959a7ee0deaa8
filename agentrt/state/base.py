"""The storage contract every backend implements (its records: :mod:`.records`).

The contract is small on purpose: resources, sessions, runs with leases, an
append-only event log per run, content-addressed blobs that runs refer to, a
watch on runs, and garbage collection. Large event payloads are stored once in
the blob table by the backend itself; callers only ever see whole events.

A store opens from a URL with :meth:`Store.from_url` (``await`` it, or
``async with`` it to close it on exit). Backends also take what the caller
already has: the SQLite store a ``sqlite3`` connection or a function that makes
one (``SqliteStore.open(connection=...)``); the PostgreSQL store a
``psycopg_pool.AsyncConnectionPool`` (``PostgresStore.open(pool=...)``), lending
one of its connections to each operation and leaving the pool open on close.

Leases and fencing: a worker executes a run while it holds the run's lease (an
owner id and an expiry). Every grant of the lease to an owner that does not
hold it live at that moment (:meth:`Store.acquire_lease`,
:meth:`Store.claim_runs`, :meth:`Store.create_run` with a ``lease_owner``)
increments the run's fencing token, ``RunRecord.lease_token``; renewing the
lease, or acquiring again a live lease one holds, keeps it. A write made with
``owner=`` is refused (``LeaseLost``) unless ``owner`` holds the lease; made
with ``token=`` too, it is refused unless the lease still carries that token.
So a worker paused past its lease (a GC pause, SIGSTOP, a network stall) that
wakes up writes nothing to a run granted since to anyone, even to an owner of
the same id. The fenced writes are :meth:`Store.append_events`,
:meth:`Store.put_blob`, :meth:`Store.renew_lease` and
:meth:`Store.release_lease`; ``token`` is optional and needs ``owner``.

Each tenant's audit log (:mod:`.audit`) is part of the contract: records appended
with the events, resource changes and calls they record, in their transactions.
So are the rate buckets of Models (:mod:`.rate_limits`): one atomic take each.
So are the circuit breakers of model endpoints (:mod:`.circuits`), the budget
ledger (:mod:`.budget_ledger`) and the scheduler's queue (:mod:`.run_queue`).

Every backend must pass ``tests/state/conformance.py`` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agentrt.state.audit import AuditDraft, AuditLog
from agentrt.state.budget_ledger import BudgetLedger
from agentrt.state.circuits import CircuitStore
from agentrt.state.opening import ClosesOnExit, Opening
from agentrt.state.rate_limits import RateBuckets
from agentrt.state.records import (
    ACTIVE_STATUSES,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    Event,
    EventDraft,
    GcResult,
    NewRun,
    ResourceRecord,
    RunBlob,
    RunCursor,
    RunOrder,
    RunRecord,
    RunStatus,
    RunUpdate,
    SessionActivity,
    SessionRecord,
    Usage,
)
from agentrt.state.run_queue import RunQueue
from agentrt.state.watch import RunWatch

__all__ = [
    "ACTIVE_STATUSES",
    "AuditDraft",
    "ClosesOnExit",
    "TERMINAL_STATUSES",
    "WAITING_STATUSES",
    "RUN_STATUSES",
    "Event",
    "EventDraft",
    "GcResult",
    "NewRun",
    "Opening",
    "ResourceRecord",
    "RunBlob",
    "RunCursor",
    "RunOrder",
    "RunRecord",
    "RunStatus",
    "RunUpdate",
    "SessionActivity",
    "SessionRecord",
    "Store",
    "Usage",
]


@runtime_checkable
class Store(AuditLog, RateBuckets, CircuitStore, RunQueue, BudgetLedger, Protocol):
    """Durable state of the runtime. All methods are coroutines; all writes are atomic."""

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> Opening[Store]:
        """Open the store a URL names, with the backend its scheme names.

        On ``Store`` itself it picks the backend; on a backend's class it takes
        that backend's URLs only (``SqliteStore.from_url("sqlite:///...")``).

        Args:
            url: ``sqlite:///abs/path.db`` or a plain file path for SQLite;
                ``postgresql://user@host:5432/db?schema=NAME`` for PostgreSQL
                (needs ``pip install 'agentrt[postgres]'``).
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
        deleted by gc; renewing a lease does not. The pseudo-run
        :data:`~agentrt.state.watch.QUEUE` is written when a run may have become
        claimable: created without a lease, its lease given up, or set
        ``running`` by an append without an owner. Writes by other processes too
        (SQLite: a kernel notification on the database's log; PostgreSQL:
        ``LISTEN``/``NOTIFY``). While nothing is written, a watch reads nothing.
        See :mod:`agentrt.state.watch`.
        """
        ...

    # --- resources -------------------------------------------------------------
    async def put_resource(
        self,
        kind: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        now: float,
        audit: AuditDraft | None = None,
    ) -> ResourceRecord:
        """Insert or update a resource.

        The generation is 1 on insert, unchanged when ``body`` equals the stored
        body, and incremented otherwise. With ``audit``, a put that changed the
        resource appends that record to the tenant's audit log in its transaction,
        its body given the new ``generation``; an unchanged put appends none.
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

    async def delete_resource(
        self, kind: str, namespace: str, name: str, *, audit: AuditDraft | None = None
    ) -> bool:
        """Delete a resource; ``True`` if it existed. With ``audit``, a delete that
        removed one appends that record to the tenant's audit log in its transaction."""
        ...

    # --- sessions --------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> SessionRecord:
        """Create a session; if the id exists already, return the stored one unchanged."""
        ...

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session, or ``None``."""
        ...

    async def list_sessions(
        self,
        *,
        namespace: str | None = None,
        principal: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 100,
    ) -> list[SessionActivity]:
        """Sessions (of ``namespace``; started by ``principal``), newest first by
        ``(created_at, id)``, each with how many of its runs are active and how many
        wait for a person.

        ``before`` is a cursor: the ``(created_at, id)`` of the last session of the
        page before, so only older sessions come.
        """
        ...

    async def delete_session(self, session_id: str) -> tuple[str, ...] | None:
        """Delete a session with its runs and their child runs (not their forks, which
        live in sessions of their own), with their events and blob references, in one
        transaction; returns the ids of the runs deleted, or ``None`` when there is no
        such session.

        Raises ``SessionBusy`` (nothing deleted) while any of those runs is
        unfinished. Blobs only they referred to go at the next :meth:`gc`.
        """
        ...

    # --- runs ------------------------------------------------------------------
    async def create_run(
        self, run: NewRun, events: Sequence[EventDraft] = ()
    ) -> tuple[RunRecord, bool]:
        """Create a run and append its first events in one transaction.

        When ``run.session_id`` is set, the session must exist; the run takes the
        session's next turn number and the session's ``next_turn`` is incremented.
        With ``run.lease_owner`` the run is created ``running`` and leased to that
        owner until ``run.lease_expires`` with ``lease_token`` 1, saving a separate
        ``acquire_lease``.
        When ``run.idempotency_key`` is set and a run of the same namespace has
        that key, nothing is written and ``(existing_run, False)`` is returned;
        otherwise ``(new_run, True)``. With ``run.if_session_idle``, a run of a
        session some of whose runs are unfinished raises ``SessionBusy`` and
        nothing is written; the check and the turn are one conditional write, so
        of two such runs racing on an idle session one is created (after the
        idempotency check: a retry of a created run gets it back).
        """
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None``."""
        ...

    async def get_run_by_key(self, namespace: str, key: str) -> RunRecord | None:
        """The run of ``namespace`` created with idempotency key ``key``, or ``None``."""
        ...

    async def list_runs(
        self,
        *,
        namespace: str | None = None,
        session_id: str | None = None,
        parent: str | None = None,
        statuses: Sequence[str] | None = None,
        agent: str | None = None,
        principal: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        updated_after: float | None = None,
        before: RunCursor | None = None,
        order: RunOrder | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs, newest first by ``(created_at, id)``; with ``session_id``, ordered by
        turn ascending instead (unless ``order="newest"``); with ``order="updated"``,
        the last updated first by ``(updated_at, id)``.

        Every filter given must hold: the namespace, session, ``parent`` (its child
        runs and its forks: a fork has a ``fork_step``, a child none), one of
        ``statuses``, the ``agent`` (target), the ``principal`` who started it,
        ``created_after <= created_at < created_before`` and ``updated_at >
        updated_after``. ``before`` is a cursor: the position of the last run of the
        page before in the order asked for (``(created_at, id)``, or ``(updated_at,
        id)`` for ``"updated"``), so only the runs after it come. Runs created
        meanwhile never move a run to another page; listed by update, a run written
        meanwhile moves to the front, so it is on no later page (nor on two). Every
        filter is served by an index, so listing one run's children, or a page of a
        tenant's runs, never scans the others; ``"updated"`` is, for a namespace and
        an agent.

        Raises ``UsageError`` for ``order="turn"`` without a session, or with ``before``.
        """
        ...

    async def count_runs(
        self,
        *,
        namespace: str | None = None,
        session_id: str | None = None,
        parent: str | None = None,
        statuses: Sequence[str] | None = None,
        agent: str | None = None,
        principal: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        updated_after: float | None = None,
    ) -> int:
        """How many runs :meth:`list_runs` with the same filters lists, over all pages."""
        ...

    async def append_events(
        self,
        run_id: str,
        events: Sequence[EventDraft],
        *,
        expected_seq: int,
        owner: str | None = None,
        token: int | None = None,
        update: RunUpdate | None = None,
    ) -> int:
        """Append events after ``expected_seq`` and apply ``update``, atomically.

        Both are conditional writes, checked in the same transaction: the append
        is a compare-and-set on the run's last seq and, with ``owner``, on its
        lease (with ``token`` too, on the lease's fencing token). A terminal
        ``update.status`` also releases the run's lease.

        Returns the new last sequence number. Raises ``LeaseLost`` when the run's
        last seq is not ``expected_seq`` or, when ``owner`` is given, when the
        run's lease is not ``owner``'s (held by someone else, or by nobody), or
        when ``token`` is given and the lease was granted again since (its
        ``lease_token`` is not ``token``). Raises ``UsageError`` for a ``token``
        without an ``owner``.
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
        ``running``. Taking a lease that ``owner`` does not hold live increments
        the run's ``lease_token``; acquiring again its own live lease keeps it.
        Returns the updated run (with the token the caller now writes with), or
        ``None`` if the lease is held by another live owner (or the run is
        finished or unknown).
        """
        ...

    async def renew_lease(
        self, run_id: str, owner: str, ttl_s: float, *, now: float, token: int | None = None
    ) -> bool:
        """Extend the lease to ``now + ttl_s``; ``False`` if ``owner`` no longer holds
        it (or, with ``token``, holds it under another grant). The token stays."""
        ...

    async def renew_leases(
        self, run_ids: Sequence[str], owner: str, ttl_s: float, *, now: float
    ) -> set[str]:
        """Extend to ``now + ttl_s`` every lease of ``run_ids`` that ``owner`` holds, in
        one transaction; returns the ids it held. A worker renews all its runs at once
        this way: one write however many runs it executes."""
        ...

    async def release_lease(self, run_id: str, owner: str, *, token: int | None = None) -> None:
        """Give the lease up (no-op unless ``owner`` holds it, with ``token`` if given).

        The run keeps its ``lease_token``: the next grant increments it.
        """
        ...

    async def claim_runs(
        self, owner: str, ttl_s: float, *, now: float, limit: int = 10
    ) -> list[RunRecord]:
        """Lease up to ``limit`` runs that are queued or running with no live lease.

        Oldest first. Each claimed run is ``running`` and leased to ``owner``,
        its ``lease_token`` incremented. Two concurrent callers never claim the
        same run.
        """
        ...

    async def request_cancel(
        self,
        run_id: str,
        *,
        cause: str | None = None,
        by: str | None = None,
        now: float | None = None,
    ) -> RunRecord:
        """Mark the run for cancellation; the owning worker ends it. Returns the run.

        ``by`` is who asks and ``now`` when (the wall clock if not given), kept as
        the run's ``cancel_by`` and ``cancel_at``; a later request changes neither.
        From then on :meth:`append_events` refuses every write to the run but its
        ``cancelled`` end. A finished run is returned unchanged, and so is one
        whose cancellation was requested already: the first request's ``cause``
        (``RunRecord.cancel_cause``) stays.
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

    # --- blobs ------------------------------------------------------------------
    async def put_blob(
        self,
        data: bytes,
        *,
        run_id: str,
        name: str,
        step: int,
        owner: str | None = None,
        token: int | None = None,
    ) -> RunBlob:
        """Store ``data`` under its SHA-256 and make ``run_id`` refer to it as its
        ``name`` as of ``step``, in one write.

        Equal bytes are stored once, however many runs refer to them. A run
        refers to one blob per name and step: a second put replaces the
        reference. With ``owner`` (and ``token``), the write is fenced like an
        append: it raises ``LeaseLost`` unless ``owner`` holds the run's lease
        (under that token). Raises
        ``NotFoundError`` for an unknown run. :meth:`gc` deletes a blob once no
        run and no event refers to it.
        """
        ...

    async def get_blob(self, digest: str) -> bytes | None:
        """The bytes stored under ``digest`` (a hex SHA-256), or ``None``."""
        ...

    async def find_blob(
        self, run_id: str, name: str, *, at_step: int | None = None
    ) -> RunBlob | None:
        """What ``run_id`` refers to as ``name`` at its latest step up to ``at_step``
        (``None``: its latest of all), or ``None``."""
        ...

    # --- maintenance ------------------------------------------------------------
    async def gc(self, *, finished_before: float) -> GcResult:
        """Delete runs that finished before the given time, their events and blob
        references, sessions left with no runs, and blobs no event nor run refers
        to; reclaim the space.

        The result names the removed runs (``GcResult.run_ids``), found through
        an index on the finish time: gc never reads the runs it keeps.
        """
        ...
