"""A worker serving the queue: it claims runs up to its concurrency when the store
says there may be work, rides out a store that stops answering, and drains.

What ``agentrt worker`` runs. Waking up is the store's watch (a run created
unleased, a lease given up, a person's decision); a poll every ``poll_s``
catches what writes nothing: a lease on another host running out unrenewed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

from agentrt.engine.roster import ROSTER_KIND, ROSTER_NAMESPACE, heartbeat
from agentrt.engine.worker import Worker
from agentrt.errors import StoreError
from agentrt.state.watch import QUEUE, RunWatch

__all__ = ["Serving", "ServingState"]

log = logging.getLogger(__name__)

# Backoff while the store does not answer: from the first to the last, doubling.
_BACKOFF_FIRST_S = 0.5
_BACKOFF_LAST_S = 15.0

# The last part of a drain's grace, when runs stop at their next step boundary.
_HAND_BACK_BOUND_S = 10.0

ServingPhase = Literal["starting", "serving", "draining", "stopped"]


@dataclass(frozen=True, slots=True)
class ServingState:
    """What a health check reports of a serving worker.

    Attributes:
        phase: ``starting``, ``serving``, ``draining`` (taking nothing new) or
            ``stopped``.
        store_ok: The store answered the last claim.
        executing: How many runs execute here now.
        concurrency: How many runs it executes at most (of those it claims).
    """

    phase: ServingPhase
    store_ok: bool
    executing: int
    concurrency: int

    @property
    def ready(self) -> bool:
        """Takes work: serving, and the store answers."""
        return self.phase == "serving" and self.store_ok


class Serving:
    """Claims runs for ``worker`` until :meth:`drain`; see the module's docstring.

    While it serves, a run started in its process (a query its server took) takes
    one of its slots if the scheduler would give it one now, else it is queued and
    waits for a slot like any other run. The runs its own executions
    start (child runs) execute whatever the concurrency: holding them back could
    stop their parent for good.
    """

    def __init__(
        self, worker: Worker, *, concurrency: int, poll_s: float, name: str | None = None
    ) -> None:
        """Serve with at most ``concurrency`` claimed runs at once, polling every ``poll_s``;
        ``name`` is how the roster shows it (default: its owner id)."""
        self.worker = worker
        self.name = name or worker.owner
        self.concurrency = concurrency
        self.poll_s = poll_s
        self._phase: ServingPhase = "starting"
        self._store_ok = False
        self._draining = asyncio.Event()

    @property
    def state(self) -> ServingState:
        """The state a health check reports."""
        return ServingState(
            self._phase, self._store_ok, len(self.worker.executions), self.concurrency
        )

    def drain(self) -> None:
        """Stop claiming; :meth:`run` then lets what executes here finish."""
        if self._phase != "stopped":
            self._phase = "draining"
        self._draining.set()

    async def run(self, *, grace_s: float) -> list[str]:
        """Serve until :meth:`drain`, then wait up to ``grace_s`` for the runs executing
        here to end. Returns the runs still executing then: whoever closes the
        worker gives their leases back, and other workers take them up."""
        beating = asyncio.create_task(self._beat(), name="agentrt-heartbeat")
        try:
            return await self._serve(grace_s=grace_s)
        finally:
            beating.cancel()
            await asyncio.wait({beating})
            with contextlib.suppress(Exception):  # gone from the roster; else it ages out
                await self.worker.store.delete_resource(
                    ROSTER_KIND, ROSTER_NAMESPACE, self.worker.owner
                )

    async def _serve(self, *, grace_s: float) -> list[str]:
        try:
            return await self._claim_until_drained(grace_s=grace_s)
        finally:
            self.worker.served_slots = None

    async def _claim_until_drained(self, *, grace_s: float) -> list[str]:
        backoff = _BACKOFF_FIRST_S
        async with self.worker.store.watch() as watch:
            if not self._draining.is_set():
                self._phase = "serving"
                # From now on a run started here takes a slot of these like any queued run.
                self.worker.served_slots = self.concurrency
            while not self._draining.is_set():
                try:
                    await self._claim()
                except StoreError as exc:
                    self._store_ok = False
                    log.warning("the store does not answer (%s); again in %.1fs", exc, backoff)
                    await self._until_back(watch, backoff)
                    # At most half a lease apart: runs whose leases ran out while the
                    # store was away are taken up within a lease of its return.
                    backoff = min(backoff * 2, _BACKOFF_LAST_S, self.worker.lease_ttl_s / 2)
                    continue
                self._store_ok = True
                backoff = _BACKOFF_FIRST_S
                await self._until_work(watch)
        self.worker.served_slots = None  # draining: a run started here brings its own slot
        left = await self._finish(grace_s)
        self._phase = "stopped"
        return left

    async def _beat(self) -> None:
        """Write this worker's heartbeat to the roster every third of the lease TTL."""
        worker = self.worker
        started = worker.clock()
        while True:
            body = heartbeat(
                owner=worker.owner, name=self.name, phase=self._phase,
                concurrency=self.concurrency, started_at=started, now=worker.clock(),
            )  # fmt: skip
            try:
                await worker.store.put_resource(
                    ROSTER_KIND, ROSTER_NAMESPACE, worker.owner, body, now=body["heartbeat_at"]
                )
            except Exception as exc:  # the store is away: the claim loop says so
                log.debug("heartbeat not written: %s", exc)
            await asyncio.sleep(worker.lease_ttl_s / 3)

    async def _claim(self) -> None:
        await self.worker.retake_stranded()
        free = self.concurrency - self.worker.occupying()
        if free > 0:
            await self.worker.recover(limit=free)

    async def _until_work(self, watch: RunWatch) -> None:
        """Until the queue may have work for a free slot, a poll is due, or a drain."""
        waits: set[asyncio.Future[object]] = {asyncio.ensure_future(self._draining.wait())}
        executions = self.worker.executions.values()
        if self.worker.occupying() >= self.concurrency:
            # Full: a claim can wait for a slot (the poll still comes for the stranded).
            waits.add(
                asyncio.ensure_future(asyncio.wait(executions, return_when=asyncio.FIRST_COMPLETED))
            )
        else:
            waits.add(asyncio.ensure_future(watch.changed({QUEUE})))
        try:
            await asyncio.wait(waits, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.wait(waits)

    async def _until_back(self, watch: RunWatch, timeout: float) -> None:  # noqa: ASYNC109
        """Until the backoff passes, a drain, or the store's watch says it is back (a
        database's notifications reconnected: every run may have changed)."""
        waits: set[asyncio.Future[object]] = {
            asyncio.ensure_future(self._draining.wait()),
            asyncio.ensure_future(watch.changed({QUEUE})),
        }
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.wait(waits)

    async def _finish(self, grace_s: float) -> list[str]:
        """Let the runs executing here end within ``grace_s``: first they go on; in the
        last part of it (half, at most ten seconds) each stops at its next step
        boundary and is given back."""
        executions = self.worker.executions
        if not executions:
            return []
        bound = min(_HAND_BACK_BOUND_S, grace_s / 2)
        await asyncio.wait(executions.values(), timeout=grace_s - bound)
        if not self.worker.executions:
            return []
        return await self.worker.hand_back(bound_s=bound)
