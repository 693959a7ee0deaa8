"""Keeping the leases of the runs a worker executes: renewing them, stopping the
executions whose lease is lost or about to be, and those whose cancellation
another process requested."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, MutableSet
from typing import Any

from agentrt.engine.result import RunResult
from agentrt.state.base import Store
from agentrt.state.watch import RunWatch

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)

# An execution is stopped this long before its lease would expire unrenewed: its
# next write would be refused anyway, and a tool call started now could outlive
# the lease and run beside the worker that takes the run over.
_MARGIN_S = 1.0


class LeaseKeeper:
    """Renews the leases of the executions in ``tasks`` and stops those that must stop.

    ``tasks`` is the worker's own map of the runs executing here; the keeper
    reads it and cancels tasks in it, never adds to it. A run it stops for its
    cancellation goes into ``cancel_requested`` first, so the execution ends it
    ``cancelled``; a run whose lease is lost is stopped without a word to the
    store (it stays resumable, by whoever holds it now).
    """

    def __init__(
        self,
        store: Store,
        owner: str,
        tasks: Mapping[str, asyncio.Task[RunResult]],
        cancel_requested: MutableSet[str],
        *,
        clock: Callable[[], float],
        lease_ttl_s: float,
        cancel_poll_s: float,
    ) -> None:
        self.store = store
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s
        self.cancel_poll_s = cancel_poll_s
        self._tasks = tasks
        self._cancel_requested = cancel_requested
        self._clock = clock
        # When each run's lease runs out, as far as this worker last renewed it.
        self._held_until: dict[str, float] = {}
        # Set when a run starts executing here: the cancel watch then asks about it too.
        self.spawned = asyncio.Event()

    def started(self, run_id: str) -> None:
        """A run began executing here under a lease just taken."""
        self._held_until[run_id] = self._clock() + self.lease_ttl_s
        self.spawned.set()

    def stopped(self, run_id: str) -> None:
        """A run stopped executing here."""
        self._held_until.pop(run_id, None)

    async def renew(self) -> None:
        """Renew every third of the lease until cancelled; stop what cannot be renewed."""
        interval = self.lease_ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            await self.renew_once()

    async def renew_once(self) -> None:
        """One round of renewals: one store write for every run executing here."""
        executing = dict(self._tasks)
        if not executing:
            return
        now = self._clock()
        try:
            held = await self.store.renew_leases(
                list(executing), self.owner, self.lease_ttl_s, now=now
            )
        except Exception as exc:
            self._stop_unrenewable(executing, now, exc)
            return
        for run_id in held:
            self._held_until[run_id] = now + self.lease_ttl_s
        for run_id in executing.keys() - held:
            await self._not_renewed(run_id, executing[run_id])

    def _stop_unrenewable(
        self, executing: Mapping[str, asyncio.Task[RunResult]], now: float, exc: Exception
    ) -> None:
        """The store is unreachable: a lease may run out unrenewed and its run be
        taken over; stop each execution before its lease would."""
        for run_id, task in executing.items():
            until = self._held_until.get(run_id, now + self.lease_ttl_s)
            if self._clock() >= until - _MARGIN_S and not task.done():
                log.warning("%s: its lease could not be renewed (%s); stopping it", run_id, exc)
                task.cancel()

    async def _not_renewed(self, run_id: str, task: asyncio.Task[RunResult]) -> None:
        """Stop an execution whose lease this worker no longer holds, unless its own
        last write ended the lease (the run finished, or waits for a person) and it
        is only finishing up."""
        if task.done():
            return
        try:
            run = await self.store.get_run(run_id)
        except Exception:
            return  # unknown for now: the next round asks again
        if (
            run is not None
            and run.lease_owner is None
            and (run.finished or run.status == "waiting")
        ):
            return
        if not task.done():
            # Another worker took the run over (this one was paused past its lease,
            # or cut off): stop; the store refuses its writes to the run anyway.
            log.warning("%s: lost its lease to another worker; stopped it here", run_id)
            task.cancel()

    async def notice_cancels(self) -> None:
        """Stop the runs executing here whose cancellation another process requested.

        Woken by the store's watch when a run executing here is written (a cancel
        request is such a write), it reads the requests at most once per
        ``cancel_poll_s``; while nothing is written it reads nothing.
        """
        loop = asyncio.get_running_loop()
        looked = -self.cancel_poll_s
        async with self.store.watch() as watch:
            while True:
                await self._written_executing(watch)
                pause = looked + self.cancel_poll_s - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                looked = loop.time()
                if not self._tasks:
                    continue
                try:
                    wanted = await self.store.cancel_requests(list(self._tasks))
                except Exception:
                    continue  # a transient store error: the next write asks again
                for run_id in wanted - self._cancel_requested:
                    task = self._tasks.get(run_id)
                    if task is not None:
                        self._cancel_requested.add(run_id)
                        task.cancel()

    async def _written_executing(self, watch: RunWatch) -> None:
        """Return once a run executing here was written; a run that starts executing
        meanwhile joins those waited on."""
        while True:
            self.spawned.clear()
            executing = list(self._tasks)
            waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.spawned.wait())}
            changed: asyncio.Future[set[str]] | None = None
            if executing:
                changed = asyncio.ensure_future(watch.changed(executing))
                waits.add(changed)
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                await asyncio.wait(waits)
            if changed is not None and not changed.cancelled() and changed.result():
                return
