"""A run's events between being recorded and being committed, and the ordered,
conditional writes that commit them.

The journal buffers events whose loss costs nothing and commits them with the
next event that must be durable, all in one write conditional on the log not
having moved and on the lease's fencing token. A write once sent is seen
through to its outcome even when the task that sent it is cancelled (a team's
node stopped by the run's deadline, a drain): the store commits it anyway, so
the buffer learns whether it did before the next write goes, and the run can
still record its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from agentrt.errors import CancelRequested
from agentrt.state.base import AuditDraft, Event, EventDraft, RunUpdate, Store

__all__ = ["EventBuffer", "EventObserver"]

EventObserver = Callable[[str, Event], None]

log = logging.getLogger(__name__)

_Batch = list[tuple[Event, RunUpdate | None]]


class EventBuffer:
    """The uncommitted tail of one run's log, written to the store in order."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        last_seq: int,
        *,
        owner: str | None,
        token: int | None,
        observers: Sequence[EventObserver],
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = owner
        # The lease's fencing token: a write of an execution whose lease was granted
        # again since (even to this same owner) is refused by the store.
        self.token = token if owner is not None else None
        self.last_seq = last_seq  # durable
        self.next_seq = last_seq + 1
        self._observers = tuple(observers)
        self._lock = asyncio.Lock()
        self._pending: _Batch = []
        self._audits: dict[int, AuditDraft] = {}  # by seq: the records pending events make
        self._broken: BaseException | None = None
        # A write whose sender was cancelled before it was told the outcome.
        self._unsettled: tuple[asyncio.Future[int], _Batch] | None = None

    def add(self, type: str, data: dict[str, Any], ts: float, step: int | None,
            update: RunUpdate | None, audit: AuditDraft | None = None) -> Event:  # fmt: skip
        """Buffer an event (and ``audit``, the audit record it makes) for the next flush."""
        if self._broken is not None:
            raise self._broken
        event = Event(self.next_seq, type, data, ts, step)
        self.next_seq += 1
        self._pending.append((event, update))
        if audit is not None:
            self._audits[event.seq] = audit
        return event

    async def flush(self, through: int | None = None) -> None:
        """Commit buffered events (up to ``through``, or all) in one transaction."""
        target = self.next_seq - 1 if through is None else through
        async with self._lock:
            await self._settle()
            if self.last_seq >= target:
                return  # a concurrent flush already committed it
            if self._broken is not None:
                raise self._broken
            batch, self._pending = self._pending, []
            write = asyncio.ensure_future(self._write(batch))
            # Its outcome is taken in below, or by the next flush; if the execution
            # stops first (its lease lost, the worker drained) nobody will: it is
            # no error to report then, the run resumes from what is durable.
            write.add_done_callback(_retrieved)
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                if write.done():
                    with contextlib.suppress(Exception):  # the cancellation goes on
                        self._took(write, batch)
                else:
                    # This task was cancelled, not the write: its outcome is taken
                    # in by the next flush, before anything else is written.
                    self._unsettled = (write, batch)
                raise
            except Exception:
                pass  # raised again by _took, with what it means for the buffer
            self._took(write, batch)

    async def _write(self, batch: _Batch) -> int:
        update = None
        for _, change in batch:
            if change is not None:
                update = _merge(update, change)
        drafts = [
            EventDraft(e.type, e.data, e.ts, e.step, self._audits.get(e.seq)) for e, _ in batch
        ]
        return await self.store.append_events(
            self.run_id,
            drafts,
            expected_seq=self.last_seq,
            owner=self.owner,
            token=self.token,
            update=update,
        )

    async def _settle(self) -> None:
        """Take in the outcome of a write whose sender was cancelled."""
        if self._unsettled is None:
            return
        write, batch = self._unsettled
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not write.done() or (task is not None and task.cancelling()):
                raise  # this task too was cancelled: the next flush takes it in
        except Exception:
            pass  # what the write raised: taken in below
        self._unsettled = None
        with contextlib.suppress(BaseException):  # recorded by _took, raised by the next flush
            self._took(write, batch)

    def _took(self, write: asyncio.Future[int], batch: _Batch) -> None:
        """Apply a finished write's outcome; raise what it raised."""
        exc = write.exception() if not write.cancelled() else asyncio.CancelledError()
        if isinstance(exc, CancelRequested):
            # Nothing was written, and the run may still record its cancelled end:
            # what was buffered goes with that end (a tool's result is never lost).
            self._pending = batch + self._pending
            raise exc
        if exc is not None:
            # What was buffered is lost with this process's view of the run:
            # stop writing; a resume rebuilds the run from what is durable.
            self._broken = exc
            raise exc
        self.last_seq = write.result()
        for event, _ in batch:
            self._audits.pop(event.seq, None)
        for event, _ in batch:
            for observer in self._observers:
                try:
                    observer(self.run_id, event)
                except Exception:  # a broken watcher (a closed stdout) must not fail the run
                    log.exception("event observer failed on %s of run %s", event.type, self.run_id)

    def withdraw(self, event: Event) -> None:
        """Take a refused, unwritten event out of the buffer; later ones move up a seq."""
        kept: _Batch = []
        audits: dict[int, AuditDraft] = {}
        shift = 0
        for pending, update in self._pending:
            audit = self._audits.get(pending.seq)
            if pending is event:
                shift = 1
                continue
            kept.append((replace(pending, seq=pending.seq - 1) if shift else pending, update))
            if audit is not None:
                audits[pending.seq - shift] = audit
        self._pending = kept
        self._audits = audits
        self.next_seq -= shift


def _retrieved(write: asyncio.Future[int]) -> None:
    if not write.cancelled():
        write.exception()


def _merge(first: RunUpdate | None, then: RunUpdate) -> RunUpdate:
    """One update with the effect of ``first`` followed by ``then``."""
    if first is None:
        return then
    usage = (
        then.usage
        if first.usage is None
        else (first.usage if then.usage is None else first.usage + then.usage)
    )
    return RunUpdate(
        status=then.status or first.status,
        reason=then.reason if then.status or then.reason else first.reason,
        usage=usage,
        settles=first.settles + then.settles,
    )
