"""The shared store: one PostgreSQL database, for any number of workers on any hosts.

PostgreSQL is the queue, the lease table, the event log and the wake-up channel
at once: runs are claimed with ``FOR UPDATE SKIP LOCKED``, every write a worker
makes is checked against the run's lease (and its fencing token) in the write's
own transaction, and watches wake through ``LISTEN``/``NOTIFY``. No broker,
consensus or cluster manager beside it.

Connections: the store lends one connection of a ``psycopg_pool``
``AsyncConnectionPool`` to each operation; a write is one transaction, a read
one statement. It makes its pool from a URL (:meth:`PostgresStore.from_url`) or
takes the caller's (``PostgresStore.open(pool=...)``), which it leaves open on
close. The tables live in one schema, the first of the connections'
``search_path``: ``?schema=NAME`` in the URL sets it and makes it when missing.
A write once started runs to its end even if its caller is cancelled, as in the
SQLite store: whether it committed is never left to chance.

Problems of the store itself (a server that cannot be reached, a connection
lost, a full disk, a standby, a schema of another application or version)
raise a :class:`~agentrt.errors.StoreError` on one line naming the store (never
its password) and the fix. Needs ``pip install 'agentrt[postgres]'``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final

from agentrt.errors import UsageError
from agentrt.state._pg_errors import driver_missing

try:
    import psycopg
    from psycopg_pool import AsyncConnectionPool
except ImportError as exc:
    raise driver_missing(exc) from exc

from agentrt.state import _pg_gc
from agentrt.state._fence import check_token_has_owner
from agentrt.state._pg_audit import AuditMethods
from agentrt.state._pg_blobs import BlobOps
from agentrt.state._pg_circuits import CircuitMethods
from agentrt.state._pg_leases import LeaseOps
from agentrt.state._pg_ledger import LedgerMethods, LedgerOps
from agentrt.state._pg_long_term_memory import MemoryOps
from agentrt.state._pg_ops import Ops, RunTaken
from agentrt.state._pg_queue import QueueMethods
from agentrt.state._pg_rate_limits import RateBucketMethods
from agentrt.state._pg_rows import Conn
from agentrt.state._pg_runner import Runner
from agentrt.state._pg_schema import MIGRATIONS, lock_key, prepare
from agentrt.state._pg_sessions import SessionOps
from agentrt.state._pg_url import connection_kwargs, parse_url, shown
from agentrt.state._run_query import RunFilter
from agentrt.state.base import (
    AuditDraft,
    ClosesOnExit,
    Event,
    EventDraft,
    GcResult,
    NewRun,
    Opening,
    ResourceRecord,
    RunBlob,
    RunCursor,
    RunOrder,
    RunRecord,
    RunUpdate,
    SessionActivity,
    SessionRecord,
)
from agentrt.state.long_term_memory import MemoryHit, MemoryRecord, NewMemory
from agentrt.state.watch import QUEUE, RunWatch

__all__ = ["DEFAULT_INLINE_LIMIT", "MIGRATIONS", "PostgresStore"]

DEFAULT_INLINE_LIMIT: Final = 1024
"""Encoded event payloads larger than this many bytes go to the blob table."""


class PostgresStore(
    QueueMethods, LedgerMethods, RateBucketMethods, CircuitMethods, AuditMethods, ClosesOnExit
):
    """The :class:`~agentrt.state.base.Store` and
    :class:`~agentrt.state.long_term_memory.MemoryStore` of many workers: one
    PostgreSQL schema.

    Open it with :meth:`open` or :meth:`from_url`; close it with :meth:`close`
    or ``async with``. One instance serves any number of concurrent coroutines,
    and any number of processes on any hosts may open the same schema.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        name: str,
        owns_pool: bool,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        read_only: bool = False,
    ) -> None:
        """Prepare a store on ``pool``; it is usable once :meth:`open` checked the schema.

        Prefer :meth:`open`, which does both.
        """
        if inline_limit < 0:
            raise UsageError(f"inline_limit must be >= 0, not {inline_limit}")
        self.name = name
        self.inline_limit = inline_limit
        self.read_only = read_only
        self.schema = ""
        self._owns_pool = owns_pool
        self._run = Runner(pool, name, read_only=read_only)
        self._ops = Ops(inline_limit, 0)
        self._leases = LeaseOps()
        self._blobs = BlobOps(0)
        self._memory = MemoryOps()
        self._sessions = SessionOps()
        self._ledger = LedgerOps()

    @classmethod
    async def open(
        cls,
        conninfo: str | None = None,
        *,
        pool: AsyncConnectionPool[Any] | None = None,
        schema: str | None = None,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        read_only: bool = False,
        min_size: int = 1,
        max_size: int = 10,
    ) -> PostgresStore:
        """Connect, then make or migrate the store's schema (unless ``read_only``).

        Args:
            conninfo: A libpq connection string or URL (``postgresql://user@host/db``);
                give either it or a ``pool``.
            pool: Instead, the caller's pool: each operation borrows one of its
                connections (autocommit ones save a round trip per read), and
                :meth:`close` leaves it open. Its connections' ``search_path``
                picks the schema (``kwargs={"options": "-c search_path=NAME"}``).
            schema: With ``conninfo``: the schema of the store's tables, made when
                missing (default: the first of the server's ``search_path``).
            inline_limit: Encoded event payloads larger than this many bytes are
                stored once in the blob table.
            read_only: Only read: nothing is made, migrated or written (writes
                raise :class:`~agentrt.errors.StoreUnavailable`).
            min_size: Connections the store's own pool keeps open.
            max_size: Connections it opens at most; more callers wait for one.

        Raises:
            StoreError: The server cannot be reached or refuses the connection, or
                the schema is not an agentrt store this version can use.
            UsageError: Neither or both of ``conninfo`` and ``pool``, or ``schema``
                with ``pool``.
        """
        if (conninfo is None) == (pool is None):
            raise UsageError("give the store a conninfo or a pool (one of the two)")
        if pool is None:
            assert conninfo is not None
            return await cls._open_own(
                conninfo, schema, inline_limit, read_only, min_size, max_size
            )
        if schema is not None:
            raise UsageError(
                "an injected pool's connections pick the schema: make the pool with "
                "kwargs={'options': '-c search_path=NAME'} instead of schema="
            )
        name = shown(pool.conninfo if isinstance(pool.conninfo, str) else "postgresql")
        store = cls(
            pool, name=name, owns_pool=False, inline_limit=inline_limit, read_only=read_only
        )
        try:
            if pool.closed:
                await pool.open(wait=True)
            async with pool.connection() as conn:
                await store._prepare(conn, None)
        except psycopg.Error as exc:
            raise store._run.error(exc, connecting=True) from exc
        return store

    @classmethod
    async def _open_own(
        cls,
        conninfo: str,
        schema: str | None,
        inline_limit: int,
        read_only: bool,
        min_size: int,
        max_size: int,
    ) -> PostgresStore:
        kwargs = connection_kwargs(conninfo, schema)
        name = shown(conninfo) + ("" if schema is None else f" (schema {schema})")
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo,
            kwargs=kwargs,
            min_size=min_size,
            max_size=max(max_size, min_size),
            open=False,
            name="agentrt",
        )
        store = cls(pool, name=name, owns_pool=True, inline_limit=inline_limit, read_only=read_only)
        try:
            # A connection of its own first: its error says why, where the pool's says
            # only that it timed out.
            async with await psycopg.AsyncConnection.connect(conninfo, **kwargs) as conn:
                await store._prepare(conn, schema)
            await pool.open(wait=True, timeout=float(kwargs.get("connect_timeout", 10)) + 5)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, psycopg.Error):
                raise store._run.error(exc, connecting=True) from exc
            raise
        return store

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> Opening[PostgresStore]:
        """Open the store a ``postgresql://`` URL names; await the result or ``async with`` it.

        Query options of the store: ``schema=NAME``, ``inline_limit=<bytes>``,
        ``pool_min_size=N``, ``pool_max_size=N``; the others go to libpq
        (``sslmode``, ``connect_timeout``, ``options``, ...).

        Raises:
            UsageError: The URL is not a valid PostgreSQL URL.
        """
        conninfo, options = parse_url(url)
        return Opening(lambda: cls.open(conninfo, read_only=read_only, **options))

    async def _prepare(self, conn: Conn, schema: str | None) -> None:
        self.schema = await prepare(conn, self.name, schema=schema, read_only=self.read_only)
        blob_lock = lock_key(self.schema, "blobs")
        self._ops = Ops(self.inline_limit, blob_lock)
        self._blobs = BlobOps(blob_lock)
        self._run.start(self.schema)

    @property
    def local_dir(self) -> Path | None:
        """``None``: the store keeps no files on this host."""
        return None

    def __repr__(self) -> str:
        state = "closed" if self._run.closed else "open"
        return f"<PostgresStore {self.name!r} {state}>"

    async def close(self) -> None:
        """Let writes under way finish, stop listening, and close the pool if the store
        made it (an injected pool stays open). Idempotent."""
        await self._run.close(close_pool=self._owns_pool)

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one SQL statement on a borrowed connection (diagnostics and tests); its
        rows, or none for a statement that returns none."""
        return await self._run.query(sql, params)

    def watch(self) -> AbstractAsyncContextManager[RunWatch]:
        """Open a watch on the store's runs (see :mod:`agentrt.state.watch`).

        Writes through this store wake it at once; writes through any other store
        of the schema, in any process, through ``LISTEN``/``NOTIFY`` with the runs'
        ids, on one connection per store that only listens while a watch is open.
        """
        self._run.check_open()
        return self._run.hub.watch()

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
        """Insert or update a resource (generation 1, kept for an equal body, else +1);
        a change appends ``audit``, if given, in the same transaction."""
        put = self._ops.put_resource
        return await self._run.write(_none, put, kind, namespace, name, body, now, audit)

    async def get_resource(self, kind: str, namespace: str, name: str) -> ResourceRecord | None:
        """The resource, or ``None``."""
        return await self._run.read(self._ops.get_resource, kind, namespace, name)

    async def list_resources(
        self, kind: str | None = None, namespace: str | None = None
    ) -> list[ResourceRecord]:
        """Resources filtered by kind and namespace, ordered by (kind, namespace, name)."""
        return await self._run.read(self._ops.list_resources, kind, namespace)

    async def delete_resource(
        self, kind: str, namespace: str, name: str, *, audit: AuditDraft | None = None
    ) -> bool:
        """Delete a resource; ``True`` if it existed (and then ``audit`` is appended)."""
        delete = self._ops.delete_resource
        return await self._run.write(_none, delete, kind, namespace, name, audit)

    # --- long-term memory ------------------------------------------------------
    async def remember(self, memory: NewMemory, *, now: float) -> tuple[MemoryRecord, bool]:
        """Store a fact; ``(record, False)`` when its key was used already."""
        return await self._run.write(_none, self._memory.remember, memory, now)

    async def search_memory(
        self, namespace: str, query: str, *, limit: int = 5, tags: Sequence[str] = ()
    ) -> list[MemoryHit]:
        """Facts of ``namespace`` matching any word of ``query``, best first (``ts_rank``)."""
        return await self._run.read(
            self._memory.search_memory, namespace, query, limit, tuple(tags)
        )

    async def list_memory(self, namespace: str, *, limit: int = 100) -> list[MemoryRecord]:
        """The namespace's facts, newest first."""
        return await self._run.read(self._memory.list_memory, namespace, limit)

    async def forget(self, namespace: str, memory_id: str) -> bool:
        """Delete a fact; ``True`` if it existed."""
        return await self._run.write(_none, self._memory.forget, namespace, memory_id)

    # --- sessions --------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> SessionRecord:
        """Create a session; if the id exists already, return the stored one unchanged."""
        return await self._run.write(_none, self._ops.create_session, session)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session, or ``None``."""
        return await self._run.read(self._ops.get_session, session_id)

    async def list_sessions(
        self,
        *,
        namespace: str | None = None,
        principal: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 100,
    ) -> list[SessionActivity]:
        """Sessions (of ``namespace``, started by ``principal``), newest first, with
        their active and waiting runs."""
        return await self._run.read(
            self._sessions.list_sessions, namespace, principal, before, limit
        )

    async def delete_session(self, session_id: str) -> tuple[str, ...] | None:
        """Delete a session with its runs and their children; ``SessionBusy`` while one
        is unfinished. Returns the runs deleted (``None``: no such session)."""
        return await self._run.write(_deleted, self._sessions.delete_session, session_id)

    # --- runs ------------------------------------------------------------------
    async def create_run(
        self, run: NewRun, events: Sequence[EventDraft] = ()
    ) -> tuple[RunRecord, bool]:
        """Create a run and append its first events in one transaction (see
        :meth:`Store.create_run <agentrt.state.base.Store.create_run>`); a run id that
        exists already raises ``ConflictError``."""
        try:
            return await self._run.write(_created, self._ops.create_run, run, events)
        except RunTaken:
            # Taken by a transaction that committed meanwhile: now it can be read.
            return await self._run.read(self._ops.existing_run, run)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None``."""
        return await self._run.read(self._ops.get_run, run_id)

    async def get_run_by_key(self, namespace: str, key: str) -> RunRecord | None:
        """The run of ``namespace`` created with idempotency key ``key``, or ``None``."""
        return await self._run.read(self._ops.get_run_by_key, namespace, key)

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
        """Runs, newest first by ``(created_at, id)`` (a session's: by turn), filtered
        and paged as :meth:`Store.list_runs <agentrt.state.base.Store.list_runs>` says."""
        where = RunFilter(
            namespace, session_id, parent, statuses, agent, principal,
            created_after, created_before, updated_after, before, order,
        )  # fmt: skip
        return await self._run.read(self._ops.list_runs, where, limit)

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
        where = RunFilter(
            namespace, session_id, parent, statuses, agent, principal,
            created_after, created_before, updated_after,
        )  # fmt: skip
        return await self._run.read(self._ops.count_runs, where)

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
        """Append events after ``expected_seq`` and apply ``update``, atomically, fenced
        by ``owner`` (and ``token``); see
        :meth:`Store.append_events <agentrt.state.base.Store.append_events>`."""
        check_token_has_owner(owner, token)
        # A run set going again without a lease (a person's decision) is queue work.
        requeued = owner is None and update is not None and update.status == "running"
        touched = _requeued(run_id) if requeued else _one(run_id)
        append = self._ops.append_events
        return await self._run.write(
            touched, append, run_id, events, expected_seq, owner, token, update
        )

    async def read_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """Events with ``seq > after_seq``, in order, with payloads resolved."""
        return await self._run.read(self._ops.read_events, run_id, after_seq)

    # --- quotas ----------------------------------------------------------------
    async def count_tool_calls(
        self,
        *,
        namespace: str,
        tool: str,
        session_id: str | None = None,
        since: float | None = None,
    ) -> int:
        """How many appended calls of Tool resource ``tool`` runs of ``namespace`` made."""
        return await self._run.read(self._ops.count_tool_calls, namespace, tool, session_id, since)

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
        ``replacing``: a compare-and-set on the holder, on the locked row."""
        take = self._leases.acquire_lease
        return await self._run.write(_leased, take, run_id, owner, ttl_s, now, replacing)

    async def renew_lease(
        self, run_id: str, owner: str, ttl_s: float, *, now: float, token: int | None = None
    ) -> bool:
        """Extend the lease to ``now + ttl_s``; ``False`` if ``owner`` no longer holds
        it (under ``token``, if given). Watches do not hear of it."""
        renew = self._leases.renew_lease
        return await self._run.renewal(renew, run_id, owner, ttl_s, now, token)

    async def renew_leases(
        self, run_ids: Sequence[str], owner: str, ttl_s: float, *, now: float
    ) -> set[str]:
        """Extend every lease of ``run_ids`` that ``owner`` holds, in one statement."""
        if not run_ids:
            return set()
        renew = self._leases.renew_leases
        return await self._run.renewal(renew, list(run_ids), owner, ttl_s, now)

    async def release_lease(self, run_id: str, owner: str, *, token: int | None = None) -> None:
        """Give the lease up (no-op unless ``owner`` holds it, under ``token`` if given)."""
        await self._run.write(_released(run_id), self._leases.release_lease, run_id, owner, token)

    async def claim_runs(
        self, owner: str, ttl_s: float, *, now: float, limit: int = 10
    ) -> list[RunRecord]:
        """Lease up to ``limit`` runs that are queued or running with no live lease,
        oldest first, skipping the rows other claimers are taking (``SKIP LOCKED``)."""
        claim = self._leases.claim_runs
        return await self._run.write(_claimed, claim, owner, ttl_s, now, limit)

    async def request_cancel(
        self,
        run_id: str,
        *,
        cause: str | None = None,
        by: str | None = None,
        now: float | None = None,
    ) -> RunRecord:
        """Mark the run for cancellation, asked ``by`` at ``now`` for ``cause``; its
        owner ends it. Returns the run (the first request's ``cause`` stays)."""
        cancel = self._leases.request_cancel
        return await self._run.write(_one(run_id), cancel, run_id, cause, by, now)

    async def cancel_requests(self, run_ids: Sequence[str]) -> set[str]:
        """Which of ``run_ids`` are unfinished and have their cancellation requested."""
        if not run_ids:
            return set()
        return await self._run.read(self._leases.cancel_requests, list(run_ids))

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
        """Store ``data`` once under its SHA-256 and make ``run_id`` refer to it as
        ``name`` as of ``step``, fenced by ``owner`` (and ``token``) like an append."""
        check_token_has_owner(owner, token)
        put = self._blobs.put_blob
        return await self._run.write(_none, put, data, run_id, name, step, owner, token)

    async def get_blob(self, digest: str) -> bytes | None:
        """The bytes stored under ``digest`` (a hex SHA-256), or ``None``."""
        return await self._run.read(self._blobs.get_blob, digest)

    async def find_blob(
        self, run_id: str, name: str, *, at_step: int | None = None
    ) -> RunBlob | None:
        """What ``run_id`` refers to as ``name`` at its latest step up to ``at_step``."""
        return await self._run.read(self._blobs.find_blob, run_id, name, at_step)

    # --- maintenance ------------------------------------------------------------
    async def gc(self, *, finished_before: float) -> GcResult:
        """Delete runs that finished before the given time, their events and blob
        references, sessions left with no runs, and blobs nobody refers to."""
        collect = functools.partial(_pg_gc.gc, blob_lock=self._ops.blob_lock)
        return await self._run.write(_removed, collect, finished_before)


# What each write touched, from its result: the runs its watchers hear of.
def _none(_: object) -> tuple[str, ...]:
    return ()


def _one(run_id: str) -> Callable[[object], tuple[str]]:
    return lambda _: (run_id,)


def _released(run_id: str) -> Callable[[bool], tuple[str, ...]]:
    """A lease given up: the run, and the queue (it may have work)."""
    return lambda changed: (run_id, QUEUE) if changed else ()


def _requeued(run_id: str) -> Callable[[object], tuple[str, str]]:
    return lambda _: (run_id, QUEUE)


def _created(result: tuple[RunRecord, bool]) -> tuple[str, ...]:
    run, fresh = result
    if not fresh:
        return ()
    return (run.id,) if run.lease_owner is not None else (run.id, QUEUE)


def _leased(result: RunRecord | None) -> tuple[str, ...]:
    return () if result is None else (result.id,)


def _claimed(result: list[RunRecord]) -> list[str]:
    return [run.id for run in result]


def _removed(result: GcResult) -> tuple[str, ...]:
    return result.run_ids


def _deleted(run_ids: tuple[str, ...] | None) -> tuple[str, ...]:
    return run_ids or ()
