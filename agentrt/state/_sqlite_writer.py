"""The SQLite store's connection thread and its group commit.

The stdlib ``sqlite3`` connection lives on one dedicated thread. Coroutines put
jobs on a queue and await a future. The thread takes every job queued at that
moment and runs them all in one transaction (each write inside its own
SAVEPOINT, so one failing job does not undo the others), commits once, then
wakes the waiting coroutines with a single ``call_soon_threadsafe`` per event
loop and batch.

Reads run on the same thread: they are short and the runtime's hot path is
writes. A second read connection on its own thread was measured no faster
(append + get_run + read_events from 50 tasks): the GIL serialises the Python
half of both threads anyway.

A SQLite error that is the store's problem (a full disk, a read-only file, a
damaged page) reaches the caller as a :class:`~agentrt.errors.StoreError`
naming the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from agentrt.errors import UsageError
from agentrt.state._sqlite_errors import from_sqlite_error
from agentrt.state._sqlite_open import adopt_connection, open_connection
from agentrt.state._sqlite_schema import MEMORY
from agentrt.state._sqlite_watch import NotifyFile

__all__ = ["RAW", "READ", "STOP", "WRITE", "Job", "Writer"]

# Job kinds: reads and writes share a transaction per batch; RAW jobs run alone,
# outside any transaction (connect, PRAGMAs that cannot run inside one).
READ: Final = 0
WRITE: Final = 1
RAW: Final = 2
STOP: Final = 3

Job = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...], int]
_Outcome = tuple["asyncio.Future[Any]", BaseException | None, Any]

_MAX_BATCH: Final = 512  # bounds the latency one commit adds to the ops queued behind it


def _settle(outcomes: list[_Outcome]) -> None:
    """Resolve futures on their event loop (the waiter may have been cancelled)."""
    for fut, exc, value in outcomes:
        if fut.done():
            continue
        if exc is None:
            fut.set_result(value)
        else:
            fut.set_exception(exc)


class Writer:
    """The thread that owns the connection and runs queued jobs in group commits."""

    def __init__(
        self,
        target: str,
        synchronous: str,
        timeout: float,
        *,
        read_only: bool = False,
        connection: sqlite3.Connection | Callable[[], sqlite3.Connection] | None = None,
    ) -> None:
        """Prepare the thread; nothing runs until ``thread.start()``.

        Args:
            target: The database file, or ``":memory:"`` (unused with ``connection``).
            synchronous: The ``PRAGMA synchronous`` level.
            timeout: Seconds to wait for another process's write lock.
            read_only: Open the database read-only, without migrating it.
            connection: A caller-made connection (left open on shutdown), or a
                function that makes one on this thread (closed on shutdown).
        """
        self.target = target
        self.synchronous = synchronous
        self.timeout = timeout
        self.read_only = read_only
        self.given = connection
        self.owns_connection = not isinstance(connection, sqlite3.Connection)
        self.queue: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.conn: sqlite3.Connection | None = None
        self.local_dir: Path | None = None  # the database file's directory, once connected
        self.notify: NotifyFile | None = None  # tells other processes of commits to runs
        self.runs_written = False  # by the transaction running now
        self.stopping = False
        self.commits = 0  # write transactions committed; lets tests see batching happen
        self.jobs = 0  # jobs run; lets tests see that nothing reads while nothing changes
        self.thread = threading.Thread(target=self._main, name="agentrt-sqlite", daemon=True)

    # --- jobs that run on the thread -------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """Open the connection this thread uses (run it as a ``RAW`` job)."""
        given = self.given
        if given is None:
            conn = open_connection(
                self.target, self.synchronous, self.timeout, read_only=self.read_only
            )
        else:
            made = given if isinstance(given, sqlite3.Connection) else given()
            conn, self.target = adopt_connection(
                made, self.synchronous, read_only=self.read_only, close=self.owns_connection
            )
        if self.target not in ("", MEMORY):
            database = Path(self.target).expanduser().absolute()
            self.local_dir = database.parent
            if not self.read_only:
                self.notify = NotifyFile(database)
                self.notify.open()
        self.conn = conn
        return conn

    def writing_runs(
        self, touched: Callable[[Any], Iterable[str]], fn: Callable[..., Any], *args: Any
    ) -> Any:
        """Run ``fn`` (a write to runs): other processes hear of it after the commit, if
        it touched any (``touched`` of its result). A write that changed nothing (a
        claim that found nothing) tells nobody: idle workers on one file would
        otherwise wake each other for ever."""
        value = fn(*args)
        if touched(value):
            self.runs_written = True
        return value

    def shutdown(self) -> None:
        """Optimize and close the connection, if open (runs on the thread)."""
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        if self.notify is not None:
            self.notify.close()
        if not self.owns_connection:
            return  # the caller's connection: the caller closes it
        try:
            if not self.read_only:
                # Only an optimisation: a full disk or a lost lock must not fail the close.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA optimize")
        finally:
            conn.close()

    # --- the loop --------------------------------------------------------------
    def _main(self) -> None:
        get = self.queue.get
        get_nowait = self.queue.get_nowait
        while True:
            batch = [get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            if self.stopping:
                for i, job in enumerate(batch):
                    if job[3] == STOP:
                        self._run_safely(batch[:i])
                        self._stop(job, batch[i + 1 :])
                        return
            self._run_safely(batch)

    def _run_safely(self, batch: list[Job]) -> None:
        try:
            self._run_batch(batch)
        except Exception as exc:  # a bug here must not strand the waiters
            self._deliver([(j[0], exc, None) for j in batch])

    def _stop(self, job: Job, rest: list[Job]) -> None:
        outcomes: list[_Outcome] = []
        try:
            self.shutdown()
        except Exception as exc:
            outcomes.append((job[0], exc, None))
        else:
            outcomes.append((job[0], None, None))
        # The store refuses new jobs once stopping, so this only catches stragglers.
        while True:
            try:
                rest.append(self.queue.get_nowait())
            except queue.Empty:
                break
        closed = UsageError("the store is closed")
        outcomes.extend((j[0], closed, None) for j in rest)
        self._deliver(outcomes)

    def _run_batch(self, batch: list[Job]) -> None:
        if not batch:
            return
        self.jobs += len(batch)
        raw = [j for j in batch if j[3] == RAW]
        outcomes: list[_Outcome]
        if raw:
            txn = [j for j in batch if j[3] != RAW]
            outcomes = self._transaction(txn) if txn else []
            for fut, fn, args, _ in raw:
                try:
                    outcomes.append((fut, None, fn(*args)))
                except Exception as exc:
                    outcomes.append((fut, exc, None))
        else:
            outcomes = self._transaction(batch)
        self._deliver(outcomes)

    def _transaction(self, jobs: list[Job]) -> list[_Outcome]:
        conn = self.conn
        if conn is None:
            closed = UsageError("the store is closed")
            return [(j[0], closed, None) for j in jobs]
        write = False
        for job in jobs:
            if job[3] == WRITE:
                write = True
                break
        outcomes: list[_Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            if len(jobs) == 1:
                fut, fn, args, _ = jobs[0]
                try:
                    outcomes.append((fut, None, fn(*args)))
                except Exception as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    return [(fut, exc, None)]
            else:
                for fut, fn, args, kind in jobs:
                    if kind != WRITE:
                        try:
                            outcomes.append((fut, None, fn(*args)))
                        except Exception as exc:
                            if not conn.in_transaction:
                                raise
                            outcomes.append((fut, exc, None))
                        continue
                    conn.execute("SAVEPOINT op")
                    try:
                        value = fn(*args)
                    except Exception as exc:
                        if not conn.in_transaction:
                            raise  # SQLite rolled the whole transaction back (e.g. disk full)
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        outcomes.append((fut, exc, None))
                    else:
                        conn.execute("RELEASE op")
                        outcomes.append((fut, None, value))
            conn.execute("COMMIT")
        except Exception as exc:
            # Nothing in this transaction is durable: every job in it fails.
            self.runs_written = False
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [(j[0], exc, None) for j in jobs]
        if write:
            self.commits += 1
        if self.runs_written:
            self.runs_written = False
            if self.notify is not None:
                self.notify.touch()
        return outcomes

    def _store_error(self, exc: BaseException) -> BaseException:
        """``exc`` as the StoreError it means, when it is a SQLite error of the store's."""
        if not isinstance(exc, sqlite3.Error):
            return exc
        error = from_sqlite_error(exc, self.target, read_only=self.read_only)
        if error is None:
            return exc
        error.__cause__ = exc
        return error

    def _deliver(self, outcomes: list[_Outcome]) -> None:
        if not outcomes:
            return
        for i, (fut, exc, value) in enumerate(outcomes):
            if exc is not None:
                outcomes[i] = (fut, self._store_error(exc), value)
        loop = outcomes[0][0].get_loop()
        groups: dict[asyncio.AbstractEventLoop, list[_Outcome]] | None = None
        for item in outcomes:
            if item[0].get_loop() is not loop:
                groups = {}
                for o in outcomes:
                    groups.setdefault(o[0].get_loop(), []).append(o)
                break
        for target, items in (groups or {loop: outcomes}).items():
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                target.call_soon_threadsafe(_settle, items)
