"""The runs a process starts itself (``agentrt run``, ``Runtime.run``, a query a server
without a worker answers), taken through the scheduler like any queued run.

Such a run brings its own slot (its process executes it), so it never waits for a
worker's; but the limits of runs at once (its tenant's, Agent's and Model's
``max_running``) hold for it as for every other. One that no limit could hold
back is created leased to its process: the creation is its claim. Any other is
created queued and claimed here by the scheduler's pick
(:func:`~agentrt.engine.scheduler.pick`) over the runs this process started,
against what runs on the whole fleet: at once when no limit holds it back, else
as soon as one frees (the queue's watch, an execution here ending, or a poll
every ``poll_s``, since a run ending elsewhere tells the queue nothing). Until
then it waits in the queue with its place and reason (``agentrt runs list``),
and a worker may take it first: the claim is conditional, so only one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from agentrt.engine.schedule_book import ScheduleBook
from agentrt.engine.scheduler import caps_of, pick
from agentrt.errors import StoreError
from agentrt.state.base import Store
from agentrt.state.records import RunRecord
from agentrt.state.run_queue import QueuedRun, QueueView, aged_priority
from agentrt.state.watch import QUEUE, RunWatch

__all__ = ["LocalStarts"]

log = logging.getLogger(__name__)


class LocalStarts:
    """Claims for its process the queued runs the process started, once no limit holds
    them back; ``take`` executes each claimed run here."""

    def __init__(
        self,
        store: Store,
        book: ScheduleBook,
        *,
        owner: str,
        lease_ttl_s: float,
        clock: Callable[[], float],
        take: Callable[[RunRecord], None],
        poll_s: float = 0.5,
    ) -> None:
        """Claim under ``owner``'s leases of ``lease_ttl_s``; look again every ``poll_s``."""
        self._store = store
        self._book = book
        self._owner = owner
        self._ttl_s = lease_ttl_s
        self._clock = clock
        self._take = take
        self._poll_s = poll_s
        self._waiting: dict[str, QueuedRun] = {}
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def limited(self, namespace: str, agent: str) -> bool:
        """Whether a limit of runs at once could hold a new run of ``agent`` back."""
        return await self._book.limited(namespace, agent)

    async def room_here(self, run: QueuedRun, free: int) -> bool:
        """Whether the scheduler gives a new ``run`` one of ``free`` slots of a serving
        loop here now, before the runs waiting in the queue; ``False`` too when a limit
        of runs at once applies to it (its claim must keep it: the loop claims it)."""
        if free <= 0 or await self.limited(run.namespace, run.agent):
            return False
        now = self._clock()
        view = await self._store.queue_view(now=now, per_tenant=free)
        if not view.waiting:
            return True  # nothing else waits: nothing goes before it

        def place(r: QueuedRun) -> tuple[str, int, float]:
            return r.namespace, -aged_priority(r.priority, r.created_at, now), r.created_at

        waiting = sorted((*view.waiting, run), key=place)
        shares = await self._book.shares(r.namespace for r in waiting)
        return run.id in pick(QueueView(tuple(waiting), view.running), free, shares)

    async def start(self, run: RunRecord) -> RunRecord:
        """Take ``run`` (queued) here now if no limit holds it back, else once one frees;
        the run as it is then (leased here, or still queued)."""
        self._waiting[run.id] = QueuedRun(
            run.id, run.namespace, run.agent, run.priority, run.created_at, run.session_id
        )
        try:
            claimed = {taken.id: taken for taken in await self._round()}
        except StoreError as exc:
            # The run is created and queued: the loop below claims it once the store
            # answers (the caller's wait reads the store, and says so if it does not).
            log.warning("%s not claimed yet (%s); again soon", run.id, exc)
            claimed = {}
        if self._waiting and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._until_taken(), name="agentrt-local-starts")
        return claimed.get(run.id, run)

    def wake(self) -> None:
        """Look again now (an execution here ended: a limit may have room)."""
        self._woken.set()

    async def close(self) -> None:
        """Stop looking; the runs still held back stay queued for any claimer."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _round(self) -> list[RunRecord]:
        """Claim what the scheduler picks of the runs waiting here; those claimed."""
        now = self._clock()
        view = await self._store.queue_view(now=now, per_tenant=1)
        ours = sorted(
            self._waiting.values(),
            key=lambda r: (-aged_priority(r.priority, r.created_at, now), r.created_at),
        )
        shares = await self._book.shares(run.namespace for run in ours)
        picked = pick(QueueView(tuple(ours), view.running), len(ours), shares)
        chosen = set(picked)
        caps = caps_of((r for r in ours if r.id in chosen), shares)
        claimed = await self._store.claim_picked(
            picked, self._owner, self._ttl_s, now=now, caps=caps
        )
        for run in claimed:
            del self._waiting[run.id]
            self._take(run)
        # One picked but not claimed lost a race for a limit's room, or was taken
        # elsewhere or ended: the next round's _forget_taken tells which.
        return claimed

    async def _forget_taken(self) -> None:
        """Drop the runs another claimer took or that ended while held back here."""
        for run_id in list(self._waiting):
            run = await self._store.get_run(run_id)
            if run is None or run.status != "queued" or run.lease_owner is not None:
                self._waiting.pop(run_id, None)

    async def _until_taken(self) -> None:
        async with self._store.watch() as watch:
            while self._waiting:
                await self._until_room(watch)
                try:
                    await self._forget_taken()
                    if self._waiting:
                        await self._round()
                except StoreError as exc:
                    log.warning("runs held back here not claimed yet (%s); again soon", exc)

    async def _until_room(self, watch: RunWatch) -> None:
        waits = {
            asyncio.ensure_future(watch.changed({QUEUE}, self._poll_s)),
            asyncio.ensure_future(self._woken.wait()),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.wait(waits)
            self._woken.clear()
