"""Waiting on runs without polling: what a store's :meth:`~agentrt.state.base.Store.watch`
gives, and the parts every backend builds it from.

Use::

    async with store.watch() as watch:
        run = await store.get_run(run_id)          # read after the watch is open
        while not run.finished:
            await watch.changed({run_id}, timeout=30.0)
            run = await store.get_run(run_id)

A write to a run is: a run created, events appended (with the update in the
same write), a lease taken, claimed or given up, a cancellation requested, a
run deleted by gc. Renewing a lease is not one (it changes nothing a waiter
acts on); nor are reads.

Within one process a write wakes the watches of its store at once (an asyncio
notification, no read). Writes by other processes reach a watch through the
backend's :class:`ForeignWrites` source: for SQLite a kernel notification
(inotify) on a file the writing store touches after its commit, which does not
say which runs it wrote, so every run the watch waits on counts as written; for
PostgreSQL, ``LISTEN``/``NOTIFY`` with the runs' ids. While nothing is
written, a watch reads nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from typing import Final, Protocol, runtime_checkable

__all__ = ["QUEUE", "ChangeHub", "ForeignWrites", "RunWatch", "Watch"]

QUEUE: Final = "*queue*"
"""Not a run: the id a store writes to when a run may have become claimable (created
without a lease, or its lease given up). ``watch.changed({QUEUE}, poll)`` is how a
worker waits for work; leases that expire unrenewed write nothing, hence the poll."""

# Ids remembered between two calls of changed(); past it, every id asked for counts
# as changed (a spurious wake-up costs one read; a missed one would hang a waiter).
_MAX_PENDING: Final = 10_000


@runtime_checkable
class RunWatch(Protocol):
    """Tells which runs were written, waiting for the first without polling."""

    # A timeout that ends in an empty set is the answer, not an error: hence the parameter.
    async def changed(
        self,
        run_ids: Collection[str],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> set[str]:
        """The runs of ``run_ids`` written since the previous call (for the first
        call: since the watch opened).

        Returns at once when one was; otherwise waits until one is, or until
        ``timeout`` seconds have passed (``None``: no limit), and then returns
        the empty set. Writes to runs not in ``run_ids`` are forgotten by the
        call, so read a run after you start asking about it. It may report a
        run that was not written (a write by another process the backend cannot
        attribute); it never misses one.
        """
        ...


class ForeignWrites(Protocol):
    """How a backend hears that another process wrote runs."""

    async def start(self, on_write: Callable[[Collection[str] | None], None]) -> None:
        """Begin calling ``on_write`` on this event loop when another process wrote
        runs: with their ids, or ``None`` when the backend cannot tell which."""
        ...

    async def stop(self) -> None:
        """Stop calling it and release what :meth:`start` took."""
        ...


class Watch:
    """One open watch of a store: the ids written since its last call."""

    def __init__(self) -> None:
        """A watch, fed by :class:`ChangeHub` (on the running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._pending: set[str] = set()
        self._overflow = False
        self._foreign = False
        self._waiting: frozenset[str] = frozenset()
        self._wake = asyncio.Event()

    def notify(self, run_ids: Collection[str]) -> None:
        """Runs were written in this process (callable from any event loop or thread)."""
        if _on_loop(self._loop):
            self._add(run_ids)
        else:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._add, frozenset(run_ids))

    def notify_foreign(self) -> None:
        """Another process wrote runs, which is not known (on this watch's event loop)."""
        self._foreign = True
        if self._waiting:
            self._wake.set()

    def _add(self, run_ids: Collection[str]) -> None:
        if not self._overflow:
            self._pending.update(run_ids)
            if len(self._pending) > _MAX_PENDING:
                self._overflow = True
                self._pending.clear()
        if self._waiting and (self._overflow or not self._waiting.isdisjoint(run_ids)):
            self._wake.set()

    def _take(self, wanted: frozenset[str]) -> set[str]:
        hits = set(wanted) if self._overflow else self._pending & wanted
        self._pending.clear()
        self._overflow = False
        return hits

    async def changed(
        self,
        run_ids: Collection[str],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> set[str]:
        """See :meth:`RunWatch.changed`."""
        wanted = frozenset(run_ids)
        deadline = None if timeout is None else self._loop.time() + timeout
        while True:
            hits = self._take(wanted)
            if self._foreign:
                self._foreign = False
                hits = set(wanted)
            if hits or not wanted:
                return hits
            left = None if deadline is None else deadline - self._loop.time()
            if left is not None and left <= 0:
                return set()
            self._wake.clear()
            self._waiting = wanted
            try:
                async with asyncio.timeout(left):
                    await self._wake.wait()
            except TimeoutError:
                pass
            finally:
                self._waiting = frozenset()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class ChangeHub:
    """A store's open watches: fans out its own writes, and other processes' through
    the backend's :class:`ForeignWrites` while at least one watch is open."""

    def __init__(self, foreign: ForeignWrites | None = None) -> None:
        """A hub; ``foreign`` for backends that other processes write to."""
        self._foreign = foreign
        self._watches: set[Watch] = set()
        self._lock = asyncio.Lock()

    def publish(self, run_ids: Iterable[str]) -> None:
        """Runs were written by this process: wake the watches that wait on them."""
        ids = frozenset(run_ids)
        if ids:
            for watch in list(self._watches):
                watch.notify(ids)

    def _foreign_write(self, run_ids: Collection[str] | None) -> None:
        if run_ids is not None:
            self.publish(run_ids)
            return
        for watch in list(self._watches):
            watch.notify_foreign()

    async def close(self) -> None:
        """Stop hearing other processes' writes although watches are open (their store
        closes); they hear nothing more."""
        async with self._lock:
            if self._watches and self._foreign is not None:
                await self._foreign.stop()
            self._watches.clear()

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[Watch]:
        """Open a watch (and, with the first, the foreign-write source); close it on exit.

        The watch hears every write from the moment this yields, so a run read
        after it opens is never written unheard.
        """
        watch = Watch()
        async with self._lock:
            if not self._watches and self._foreign is not None:
                await self._foreign.start(self._foreign_write)
            self._watches.add(watch)
        try:
            yield watch
        finally:
            # Shielded: a watch closed by a cancellation still gives back what it took.
            await asyncio.shield(self._close(watch))

    async def _close(self, watch: Watch) -> None:
        async with self._lock:
            self._watches.discard(watch)
            if not self._watches and self._foreign is not None:
                await self._foreign.stop()
