"""The embedded default store: one SQLite database file.

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` by
default. A committed write survives the process crashing or being killed at any
moment, which is what agentrt promises. It may be lost if the machine loses
power before the OS flushes its buffers; for that, open the store with
``durability="full"`` (``synchronous=FULL``), at the cost of one fsync per
commit.

Concurrency: one connection, on a thread of its own, runs every operation
queued at a moment in one transaction and commits once, so under load many
small appends cost one commit (group commit; see
:mod:`agentrt.state._sqlite_writer`).

Storage: event payloads are orjson-encoded. A payload larger than the inline
limit is stored once in the ``blobs`` table under its SHA-256 and the event row
keeps only the 32-byte digest, so a large tool result recurring across events,
runs and forks costs its size once. The database is created with
``auto_vacuum=INCREMENTAL`` so :meth:`SqliteStore.gc` gives space back to the
file system.

Problems of the store itself (a path that is not a store, read-only media, a
full disk, a damaged file) raise a :class:`~agentrt.errors.StoreError` that
names the file and the fix. ``read_only=True`` opens a store without writing
anything, not even a migration, so it works on read-only media.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, TypeVar

from agentrt.errors import StoreUnavailable, UsageError
from agentrt.state._fence import check_token_has_owner
from agentrt.state._sqlite_audit import AuditMethods
from agentrt.state._sqlite_blobs import BlobOps
from agentrt.state._sqlite_circuits import CircuitMethods, CircuitOps
from agentrt.state._sqlite_leases import LeaseMethods
from agentrt.state._sqlite_ledger import LedgerMethods, LedgerOps
from agentrt.state._sqlite_long_term_memory import MemoryMethods, MemoryOps
from agentrt.state._sqlite_ops import Ops
from agentrt.state._sqlite_queue import QueueMethods
from agentrt.state._sqlite_rate_limits import RateBucketMethods
from agentrt.state._sqlite_run_lists import RunListMethods
from agentrt.state._sqlite_schema import MIGRATIONS
from agentrt.state._sqlite_sessions import SessionMethods, SessionOps
from agentrt.state._sqlite_url import default_store_path, parse_url
from agentrt.state._sqlite_watch import (
    NotifyWatcher,
    touched_created,
    touched_one,
    touched_released,
    touched_removed,
)
from agentrt.state._sqlite_writer import RAW, READ, STOP, WRITE, Writer
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
    RunRecord,
    RunUpdate,
)
from agentrt.state.watch import ChangeHub, RunWatch

__all__ = [
    "DEFAULT_INLINE_LIMIT",
    "MIGRATIONS",
    "Connection",
    "Durability",
    "SqliteStore",
    "default_store_path",
]

T = TypeVar("T")

Durability = Literal["normal", "full"]

Connection: TypeAlias = sqlite3.Connection | Callable[[], sqlite3.Connection]
"""What :meth:`SqliteStore.open` takes instead of a path: a connection the caller
made (and closes), or a function the store calls to make one (and closes)."""

DEFAULT_INLINE_LIMIT: Final = 1024
"""Encoded event payloads larger than this many bytes go to the blob table."""


class SqliteStore(
    LeaseMethods,
    QueueMethods,
    SessionMethods,
    RunListMethods,
    LedgerMethods,
    RateBucketMethods,
    CircuitMethods,
    MemoryMethods,
    AuditMethods,
    ClosesOnExit,
):
    """The embedded :class:`~agentrt.state.base.Store`: one SQLite file in WAL mode.

    Open it with :meth:`open` or :meth:`from_url`; close it with :meth:`close`
    or ``async with``. One instance serves any number of concurrent coroutines;
    several processes may open the same file (SQLite serialises their writes).

    ``durability="normal"`` (the default, ``synchronous=NORMAL``) keeps every
    committed write across a crash or kill of the process. Surviving a power
    loss or OS crash needs ``durability="full"`` (``synchronous=FULL``).
    """

    def __init__(
        self,
        path: str,
        *,
        durability: Durability = "normal",
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        busy_timeout_s: float = 5.0,
        read_only: bool = False,
        connection: Connection | None = None,
    ) -> None:
        """Prepare a store; it is usable after :meth:`open` connects it.

        Prefer :meth:`open`, which does both.
        """
        if durability not in ("normal", "full"):
            raise UsageError(f"durability must be 'normal' or 'full', not {durability!r}")
        if inline_limit < 0:
            raise UsageError(f"inline_limit must be >= 0, not {inline_limit}")
        self.path = path
        self.durability: Durability = durability
        self.inline_limit = inline_limit
        self.read_only = read_only
        self._writer = Writer(
            path,
            "FULL" if durability == "full" else "NORMAL",
            busy_timeout_s,
            read_only=read_only,
            connection=connection,
        )
        self._put = self._writer.queue.put
        self._db: Ops | None = None
        self._memory_db: MemoryOps | None = None
        self._blob_db: BlobOps | None = None
        self._session_db: SessionOps | None = None
        self._ledger_db: LedgerOps | None = None
        self._circuit_db: CircuitOps | None = None
        self._local_dir: Path | None = None
        self._closed = True
        self._closing: asyncio.Future[None] | None = None
        self._hub = ChangeHub()
        self._foreign: NotifyWatcher | None = None

    @classmethod
    async def open(
        cls,
        path: str | Path | None = None,
        *,
        durability: Durability = "normal",
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        busy_timeout_s: float = 5.0,
        read_only: bool = False,
        connection: Connection | None = None,
    ) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and migrate its schema.

        Args:
            path: The database file; parent directories are created. ``":memory:"``
                gives a private in-memory database (for tests). Give either a
                path or a ``connection``.
            durability: ``"normal"`` survives process crashes; ``"full"`` also
                power loss, with an fsync per commit.
            inline_limit: Encoded event payloads larger than this many bytes are
                stored once in the blob table.
            busy_timeout_s: How long to wait for another process's write lock.
            read_only: Only read: nothing is created, migrated or written (writes
                raise :class:`~agentrt.errors.StoreUnavailable`). A file that does
                not exist reads as an empty store.
            connection: Instead of a path, a connection the caller made, or a
                function the store calls (on its own thread) to make one. The
                store uses it from its thread (so a caller-made connection needs
                ``check_same_thread=False`` and no other user while the store is
                open), switches it to autocommit (``isolation_level=None``: the
                store runs its own transactions) and to WAL mode, marks and
                migrates its database like a new file's (an empty database is
                taken as a new store), and on close leaves a caller-made
                connection open and closes one it made.

        Returns:
            The open store.

        Raises:
            StoreError: The path cannot hold a store, the file is not an agentrt
                store this version can use (another application's, damaged, a
                newer schema, or an older one when ``read_only``), or it cannot be
                written here (read-only media, permissions, a full disk).
        """
        if (path is None) == (connection is None):
            raise UsageError("give the store a path or a connection (one of the two)")
        store = cls(
            "" if path is None else str(path),
            durability=durability,
            inline_limit=inline_limit,
            busy_timeout_s=busy_timeout_s,
            read_only=read_only,
            connection=connection,
        )
        await store._start()
        return store

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> Opening[SqliteStore]:
        """Open the store a ``sqlite:///`` URL names; await the result or ``async with`` it.

        ``sqlite:///abs/path.db`` is an absolute path and ``sqlite:///:memory:``
        an in-memory database (tests only). Query options: ``durability=full``,
        ``inline_limit=<bytes>``; ``read_only`` as for :meth:`open`. A URL that is
        not a valid SQLite URL raises ``UsageError``.
        """
        path, kwargs = parse_url(url)
        return Opening(lambda: cls.open(path, read_only=read_only, **kwargs))

    @property
    def local_dir(self) -> Path | None:
        """The directory that holds the database file, or ``None`` in memory."""
        return self._local_dir

    async def _start(self) -> None:
        self._writer.thread.start()
        self._closed = False
        try:
            conn = await self._submit(RAW, self._writer.connect)
            # A given connection names its file only once connected.
            self.path = self._writer.target
            self._local_dir = self._writer.local_dir
            self._db = Ops(conn, self.inline_limit)
            self._memory_db = MemoryOps(conn)
            self._blob_db = BlobOps(conn)
            self._session_db = SessionOps(conn)
            self._ledger_db = LedgerOps(conn)
            self._circuit_db = CircuitOps(conn)
        except BaseException:
            await self.close()
            raise
        if self._local_dir is not None:
            # Other processes may write this file: their commits reach watches too.
            notify = self._writer.notify
            self._foreign = NotifyWatcher(
                self._local_dir / Path(self.path).name, "" if notify is None else notify.name
            )
            self._hub = ChangeHub(self._foreign)

    # --- watching ----------------------------------------------------------------
    def watch(self) -> AbstractAsyncContextManager[RunWatch]:
        """Open a watch on the store's runs (see :mod:`agentrt.state.watch`).

        Writes through this store wake it at once. Other stores (in this or
        another process) tell of theirs after each commit through a file in
        ``<database>-notify/``, heard with inotify (looked at twice a second where
        there is none); such a write reports every run the watch waits on (the
        file does not say which it wrote).
        """
        if self._closed:
            raise UsageError("the store is closed")
        return self._hub.watch()

    async def _write(
        self, touched: Callable[[T], Iterable[str]], fn: Callable[..., T], *args: Any
    ) -> T:
        """Run a write to runs; once committed, wake the watches of the runs it touched.

        Shielded: a caller cancelled meanwhile does not stop a commit from being told.
        """
        fut = self._submit(WRITE, functools.partial(self._writer.writing_runs, touched, fn), *args)
        fut.add_done_callback(functools.partial(self._committed, touched))
        return await asyncio.shield(fut)

    def _committed(self, touched: Callable[[Any], Iterable[str]], fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._hub.publish(touched(fut.result()))

    def _submit(self, kind: int, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closed:
            raise UsageError("the store is closed")
        if kind == WRITE and self.read_only:
            raise StoreUnavailable(
                self.path, "was opened read-only", "open it without read_only to change it"
            )
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._put((fut, fn, args, kind))
        return fut

    @property
    def _ops(self) -> Ops:
        return _opened(self._db)

    @property
    def _blobs(self) -> BlobOps:
        return _opened(self._blob_db)

    @property
    def _memory(self) -> MemoryOps:
        return _opened(self._memory_db)

    @property
    def _sessions(self) -> SessionOps:
        return _opened(self._session_db)

    @property
    def _ledger(self) -> LedgerOps:
        return _opened(self._ledger_db)

    @property
    def _circuits(self) -> CircuitOps:
        return _opened(self._circuit_db)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SqliteStore {self.path!r} {state}>"

    async def close(self) -> None:
        """Finish queued work, then close the connection. Idempotent."""
        if self._closing is None:
            if not self._writer.thread.is_alive():
                self._closed = True
                return
            self._closed = True
            self._writer.stopping = True
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._closing = fut
            self._put((fut, self._writer.shutdown, (), STOP))
        await asyncio.shield(self._closing)

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one SQL statement outside any transaction (diagnostics and tests)."""
        return await self._submit(RAW, self._ops.query, sql, params)

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
        body (nothing is written then), and incremented otherwise. A change
        appends ``audit``, if given, in the same transaction.
        """
        put = self._ops.put_resource
        return await self._submit(WRITE, put, kind, namespace, name, body, now, audit)

    async def get_resource(self, kind: str, namespace: str, name: str) -> ResourceRecord | None:
        """The resource, or ``None``."""
        return await self._submit(READ, self._ops.get_resource, kind, namespace, name)

    async def list_resources(
        self, kind: str | None = None, namespace: str | None = None
    ) -> list[ResourceRecord]:
        """Resources filtered by kind and namespace, ordered by (kind, namespace, name)."""
        return await self._submit(READ, self._ops.list_resources, kind, namespace)

    async def delete_resource(
        self, kind: str, namespace: str, name: str, *, audit: AuditDraft | None = None
    ) -> bool:
        """Delete a resource; ``True`` if it existed (and then ``audit`` is appended)."""
        return await self._submit(WRITE, self._ops.delete_resource, kind, namespace, name, audit)

    # --- long-term memory: MemoryMethods; audit log: AuditMethods ---------------
    # --- sessions: SessionMethods -----------------------------------------------

    # --- runs ------------------------------------------------------------------
    async def create_run(
        self, run: NewRun, events: Sequence[EventDraft] = ()
    ) -> tuple[RunRecord, bool]:
        """Create a run and append its first events in one transaction.

        With ``run.session_id`` the session must exist (else ``NotFoundError``);
        the run takes its next turn. With ``run.idempotency_key`` matching a run
        of the same namespace, nothing is written and ``(existing, False)`` is
        returned. A run id that exists already raises ``ConflictError``.
        """
        return await self._write(touched_created, self._ops.create_run, run, events)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None``."""
        return await self._submit(READ, self._ops.get_run, run_id)

    async def get_run_by_key(self, namespace: str, key: str) -> RunRecord | None:
        """The run of ``namespace`` created with idempotency key ``key``, or ``None``."""
        return await self._submit(READ, self._ops.get_run_by_key, namespace, key)

    # list_runs, count_runs: RunListMethods

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

        The run's ``updated_at`` (and ``finished_at`` when ``update`` makes it
        terminal) is the ``ts`` of the last appended event, or the wall clock
        when no events are given.

        Returns:
            The new last sequence number.

        Raises:
            LeaseLost: The run's last seq is not ``expected_seq``, or ``owner``
                is given and does not hold the lease (under ``token``, if given).
            CancelRequested: The run's cancellation was requested and ``update``
                does not end it ``cancelled``.
            NotFoundError: The run does not exist.
            UsageError: ``token`` is given without ``owner``.
        """
        check_token_has_owner(owner, token)
        # A run set going again without a lease (a person's decision) is queue work.
        requeued = owner is None and update is not None and update.status == "running"
        return await self._write(
            touched_released(run_id) if requeued else touched_one(run_id),
            self._ops.append_events,
            run_id,
            events,
            expected_seq,
            owner,
            token,
            update,
        )

    async def read_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """Events with ``seq > after_seq``, in order, with payloads resolved.

        Raises:
            NotFoundError: The run does not exist.
        """
        return await self._submit(READ, self._ops.read_events, run_id, after_seq)

    # --- quotas ----------------------------------------------------------------
    async def count_tool_calls(
        self,
        *,
        namespace: str,
        tool: str,
        session_id: str | None = None,
        since: float | None = None,
    ) -> int:
        """How many calls of Tool resource ``tool`` runs of ``namespace`` recorded.

        Counts appended ``tool.call`` events whose data has ``"toolset": tool``
        (not those passed to :meth:`create_run`, which copy calls made by another
        run), optionally only in session ``session_id`` and with ``ts >= since``.
        Served by the ``tool_calls`` table, filled in the appending transaction.
        """
        return await self._submit(
            READ, self._ops.count_tool_calls, namespace, tool, session_id, since
        )

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
        """Store ``data`` once under its SHA-256 (the ``blobs`` table event payloads
        use too) and make ``run_id`` refer to it as ``name`` as of ``step``.

        Raises:
            LeaseLost: ``owner`` is given and does not hold the run's lease (under
                ``token``, if given).
            NotFoundError: The run does not exist.
        """
        check_token_has_owner(owner, token)
        put = self._blobs.put_blob
        return await self._submit(WRITE, put, data, run_id, name, step, owner, token)

    async def get_blob(self, digest: str) -> bytes | None:
        """The bytes stored under ``digest`` (a hex SHA-256), or ``None``."""
        return await self._submit(READ, self._blobs.get_blob, digest)

    async def find_blob(
        self, run_id: str, name: str, *, at_step: int | None = None
    ) -> RunBlob | None:
        """What ``run_id`` refers to as ``name`` at its latest step up to ``at_step``."""
        return await self._submit(READ, self._blobs.find_blob, run_id, name, at_step)

    # --- maintenance ------------------------------------------------------------
    async def gc(self, *, finished_before: float) -> GcResult:
        """Delete runs that finished before the given time and what only they used.

        Removes their events, sessions created before the cutoff that have no
        runs left, and blobs no event references; then returns the freed pages
        to the file system (incremental vacuum and a WAL checkpoint).
        """
        result = await self._write(touched_removed, self._ops.gc, finished_before)
        # Must run outside the deleting transaction: inside it frees nothing.
        # executescript because execute() steps incremental_vacuum only once.
        vacuum = "PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);"
        await self._submit(RAW, self._ops.script, vacuum)
        return result


def _opened(part: T | None) -> T:
    """A part the store makes when it connects; before that, a usage error."""
    if part is None:
        raise UsageError("the store is not open")
    return part
