"""The worker: takes runs up under a lease, executes them here, and lets them go.

It creates runs already leased to itself, claims interrupted and queued ones
with ``Store.claim_runs`` (and takes over the runs of a process on this host
that is known to be gone), renews the leases of what it executes, stops an
execution whose cancellation was requested, and tells whoever waits on a run
when it ends or needs a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import aiohttp

from agentrt._owner import is_local_owner, owner_is_dead
from agentrt.engine import events as ev
from agentrt.engine.audit_trail import submitted
from agentrt.engine.catalog import Catalog
from agentrt.engine.children import ChildRuns
from agentrt.engine.executor import Executor
from agentrt.engine.holders import dead_holder, orphaned
from agentrt.engine.hooks import HookSet
from agentrt.engine.journal import EventObserver
from agentrt.engine.lease_keeper import LeaseKeeper
from agentrt.engine.local_starts import LocalStarts
from agentrt.engine.plans import RunCreated
from agentrt.engine.result import RunResult
from agentrt.engine.run_cancel import cancel
from agentrt.engine.run_create import create_run
from agentrt.engine.run_view import RunView
from agentrt.engine.schedule_book import ScheduleBook, claim_next
from agentrt.engine.scratch import ScratchSpace
from agentrt.engine.tenant_budgets import BudgetBook
from agentrt.engine.turn_order import after_earlier_turns
from agentrt.errors import ConflictError, LeaseLost, NotFoundError, StoreError
from agentrt.settings import Settings
from agentrt.spec.resources import DoubleTexting
from agentrt.state.base import (
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    Event,
    EventDraft,
    NewRun,
    RunRecord,
    Store,
)
from agentrt.state.run_queue import QueuedRun
from agentrt.state.watch import RunWatch
from agentrt.tools.factory import ToolFactory

__all__ = ["Worker", "new_run_id"]

log = logging.getLogger(__name__)

# Runs claimed in one round of recovery; rounds repeat until none are left.
_CLAIM_BATCH = 50

# How often a waiter looks whether a lease holder on this host is still alive: a
# signal to its pid costs no store read, and a killed holder is taken over at once
# instead of after its lease expires.
_LIVENESS_S = 1.0


def new_run_id() -> str:
    """A run id that sorts by creation time: ``run_`` + ms timestamp + randomness."""
    return f"run_{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


_RETAKE_FIRST_S = 0.5  # the first wait before a stranded run is taken up again


def _report_stopped(task: asyncio.Task[RunResult], awaited: set[str]) -> None:
    """Log an execution that stopped on an error (a store failure, a lost lease).

    Whoever waits on the run gets the error too; a worker has no one waiting, and
    the error would otherwise surface only as "Task exception was never retrieved".
    The run keeps what it recorded and is resumed later.
    """
    run_id = task.get_name().removeprefix("agentrt-")
    waited = run_id in awaited
    awaited.discard(run_id)
    if task.cancelled() or task.exception() is None:
        return
    exc = task.exception()
    # A caller waiting on the run (the CLI) prints the error's message: the line
    # names its kind only. Nobody waits on a worker's runs: the line says it all.
    why = type(exc).__name__ if waited else f"{type(exc).__name__}: {exc}"
    log.error("%s stopped before its end (%s); it stays resumable", run_id, why, exc_info=exc)


class Worker:
    """Executes runs in this process under leases held by ``owner``.

    The worker makes the executor and the child-run service its executions
    use, so that a child run started by a tool is created, leased and waited
    on here like any other run.
    """

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        *,
        owner: str,
        clock: Callable[[], float],
        lease_ttl_s: float,
        cancel_poll_s: float,
        notice_cancels: bool,
        hooks: HookSet,
        observers: Sequence[EventObserver],
        settings: Settings,
        http: aiohttp.ClientSession | None,
        scratch: ScratchSpace | None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s
        self.cancel_poll_s = cancel_poll_s
        self._clock = clock
        self._notice_cancels = notice_cancels
        self.cancel_requested: set[str] = set()
        self.children = ChildRuns(store, catalog, self)
        self.schedule = ScheduleBook(store)
        # The slots of the serving loop that claims from the queue here (set by Serving;
        # None: none does).
        self.served_slots: int | None = None
        self.local_starts = LocalStarts(
            store, self.schedule, owner=owner, lease_ttl_s=lease_ttl_s, clock=clock,
            take=lambda run: self.spawn(run.id, session_id=run.session_id),
        )  # fmt: skip
        self.executor = Executor(
            store=store,
            owner=owner,
            clock=clock,
            hooks=hooks,
            observers=observers,
            environ=dict(settings.environ),
            tool_factory=ToolFactory(settings),
            http=http,
            children=self.children,
            scratch=scratch,
            cancel_requested=self.cancel_requested,
            budgets=BudgetBook(store),
        )
        self._tasks: dict[str, asyncio.Task[RunResult]] = {}
        self._awaited: set[str] = set()  # executions here a caller waits on
        self._watchers: list[asyncio.Task[None]] = []
        self.leases = LeaseKeeper(
            store,
            owner,
            self._tasks,
            self.cancel_requested,
            clock=clock,
            lease_ttl_s=lease_ttl_s,
            cancel_poll_s=cancel_poll_s,
        )
        # Runs whose execution stopped on a store error while this worker held their
        # lease: taken up again here once the store answers (see retake_stranded).
        # Each stranded run: when it may be taken up again. A run stranded again at
        # once (a store error only it meets) waits twice as long each time, so it
        # cannot spin; the count resets when an execution of it ends.
        self.stranded: dict[str, float] = {}
        self._strandings: dict[str, int] = {}

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Start renewing leases and noticing cancellations requested elsewhere."""
        self._watchers.append(asyncio.create_task(self.leases.renew(), name="agentrt-leases"))
        if self._notice_cancels:
            watch = asyncio.create_task(self.leases.notice_cancels(), name="agentrt-cancels")
            self._watchers.append(watch)

    async def close(self) -> None:
        """Stop executions in flight (they stay resumable) and close the executor.

        Executions and watchers are stopped together: an execution's last writes
        may still wake a watch, which must not outlive the store it watches.
        """
        await self.local_starts.close()
        stopping = [*self._watchers, *self._tasks.values()]
        self._watchers.clear()
        for task in stopping:
            task.cancel()
        for task in stopping:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.executor.close()

    async def hand_back(self, *, bound_s: float) -> list[str]:
        """Stop every execution here at its next step boundary and give its lease back.

        Nothing is lost or left unknown: a model call in flight is dropped (the next
        owner makes it again), a tool call in flight is let finish and its result
        recorded, for up to ``bound_s`` seconds, before it is stopped too. Returns
        the runs given back.
        """
        tasks = dict(self._tasks)
        self.executor.handing_back.update(tasks)
        for run_id, task in tasks.items():
            if not self.executor.in_tool_call(run_id):
                task.cancel()
        if tasks:
            await asyncio.wait(tasks.values(), timeout=bound_s)
        for task in tasks.values():
            task.cancel()
        for task in tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.executor.handing_back.difference_update(tasks)
        return sorted(tasks)

    def executing(self, run_id: str) -> bool:
        """Whether ``run_id`` executes in this process now."""
        return run_id in self._tasks

    @property
    def clock(self) -> Callable[[], float]:
        """The clock leases are reckoned by."""
        return self._clock

    @property
    def executions(self) -> dict[str, asyncio.Task[RunResult]]:
        """The runs executing here now and their tasks (a copy)."""
        return dict(self._tasks)

    def occupying(self) -> int:
        """How many executions here take a slot: all but those whose step waits for
        other steps' budget holds to settle (the holders may need a slot to go on)."""
        book = self.executor.budgets
        waiting = 0 if book is None else len(book.waiting & self._tasks.keys())
        return len(self._tasks) - waiting

    # --- taking runs up ---------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord:
        """The stored run; a clear error when there is none."""
        run = await self.store.get_run(run_id)
        if run is None:
            raise NotFoundError(f"run {run_id!r} not found; list runs with `agentrt runs list`")
        return run

    async def submit(
        self,
        target: str,
        created: RunCreated,
        *,
        namespace: str,
        session: str | None = None,
        idempotency_key: str | None = None,
        parent_run: str | None = None,
        fork_step: int | None = None,
        start: bool = True,
        double_texting: DoubleTexting | None = None,
        principal: str | None = None,
        own_session: bool = False,
        priority: int = 0,
    ) -> RunRecord:
        """Create a run of ``created`` and (by default) execute it here.

        A run started here goes through the scheduler like any queued run. While a
        serving loop claims from the queue here (:attr:`served_slots`), it takes a
        slot of that loop's if the scheduler would give it one now, else it is
        created queued and waits for a slot as every other run does. Otherwise it
        brings its own slot and waits only for a limit of runs at once
        (:mod:`agentrt.engine.local_starts`). One that starts at once (and a child
        run: it runs as a step of its parent) is created already leased to this
        worker, so no other can take it between its creation and its first step.
        With an ``idempotency_key`` already used in the namespace, the existing run
        is returned; if nobody executes it any more (its process died), it is
        resumed here.

        A turn of a ``session`` records its double-texting policy (the query's
        ``double_texting``, else its target's): under ``reject`` it is created
        only while the session has no unfinished turn (else ``SessionBusy``,
        nothing created), in the same write that gives it its turn.

        ``principal`` is who starts it: kept on the run and in its first event, and
        on its session when the session is new. With ``own_session`` the turn joins
        only a session ``principal`` started (else ``SessionTaken``, nothing created).
        """
        now = self._clock()
        policy = None
        if session is not None:
            policy = double_texting or created.session_policy
            created = replace(created, double_texting=policy)
        data = created.data if principal is None else {**created.data, "by": principal}
        run_id = new_run_id()
        queued = QueuedRun(run_id, namespace, target, priority, now, session)
        leased = start and (parent_run is not None or not await self._queued_start(queued))
        new = NewRun(
            run_id,
            namespace,
            target,
            now,
            session,
            idempotency_key,
            parent_run=parent_run,
            fork_step=fork_step,
            lease_owner=self.owner if leased else None,
            lease_expires=now + self.lease_ttl_s if leased else None,
            if_session_idle=policy == "reject",
            principal=principal,
            priority=priority,
        )
        first = EventDraft(ev.RUN_CREATED, data, now, audit=submitted(created.input, new))
        run, fresh = await create_run(self.store, new, first, own_session=own_session)
        if fresh and leased:
            # Created leased to us, and its whole log is the event just written.
            known = (run, [Event(1, first.type, first.data, first.ts)])
            self.spawn(run.id, session_id=run.session_id, known=known, created=created)
        elif start and run.status == "queued" and run.lease_owner is None:
            if self.served_slots is None:  # else the serving loop claims it in its turn
                run = await self.local_starts.start(run)
        elif start:
            await self.adopt(run, queued=True)
        return run

    async def _queued_start(self, run: QueuedRun) -> bool:
        """Whether a new run started here is created queued, not leased: while a serving
        loop claims from the queue here, unless the scheduler would give it a free
        slot of that loop's now; else when a limit of runs at once could hold it back."""
        if self.served_slots is not None:
            free = self.served_slots - self.occupying()
            return not await self.local_starts.room_here(run, free)
        return await self.local_starts.limited(run.namespace, run.agent)

    async def take_up(self, run: RunRecord, *, replacing: str | None = None) -> None:
        """Lease ``run`` and execute it here; ``ConflictError`` if another holds it.
        A run this worker executes already is left to that execution."""
        if run.id in self._tasks:
            return  # its lease is this worker's: acquiring it again would run it twice
        leased = await self.store.acquire_lease(
            run.id, self.owner, self.lease_ttl_s, now=self._clock(), replacing=replacing
        )
        if leased is None:
            raise ConflictError(
                f"run {run.id} is owned by {run.lease_owner} (lease until "
                f"{run.lease_expires}); it resumes elsewhere or after the lease expires"
            )
        self.spawn(run.id, session_id=run.session_id)

    async def adopt(self, run: RunRecord, *, queued: bool = False) -> None:
        """Execute ``run`` here if nobody alive executes it (``queued``: also a run no
        worker has started yet). Losing the race to another taker is fine."""
        if run.id in self._tasks or not orphaned(run, self._clock()):
            return
        if run.status == "queued" and not queued:
            return
        with contextlib.suppress(ConflictError):
            await self.take_up(run, replacing=dead_holder(run))

    async def recover(self, *, limit: int | None = None) -> list[str]:
        """Execute here every run nobody alive executes (at most ``limit`` of them):
        claimed from the queue (queued, or with an expired lease) in the order the
        scheduler picks (:mod:`agentrt.engine.scheduler`), or taken over from a
        process on this host that is gone."""
        taken: list[str] = []
        more = True
        while more and (limit is None or len(taken) < limit):
            # Up to every free slot in one pick and one claim: the queue is read once.
            batch = _CLAIM_BATCH if limit is None else limit - len(taken)
            claimed, more = await claim_next(
                self.store, self.schedule, owner=self.owner, ttl_s=self.lease_ttl_s,
                now=self._clock(), slots=batch,
            )  # fmt: skip
            for run in claimed:
                self.spawn(run.id, session_id=run.session_id)
                taken.append(run.id)
        if limit is not None and len(taken) >= limit:
            return taken
        # A holder known dead still has a live lease: claim_runs leaves it alone.
        for run in await self.store.list_runs(statuses=["running"], limit=1000):
            holder = dead_holder(run)
            if holder is None or run.id in self._tasks:
                continue
            with contextlib.suppress(ConflictError):
                await self.take_up(run, replacing=holder)
                taken.append(run.id)
        return taken

    async def retake_stranded(self) -> list[str]:
        """Take up again the runs whose execution here stopped on a store error, if
        this worker still holds (or can take) their lease; forget the others."""
        taken = []
        now = self._clock()
        for run_id, not_before in list(self.stranded.items()):
            if not_before > now:
                continue
            del self.stranded[run_id]
            if run_id in self._tasks:
                continue
            leased = await self.store.acquire_lease(
                run_id, self.owner, self.lease_ttl_s, now=self._clock()
            )
            if leased is not None and not leased.finished:
                self.spawn(run_id, session_id=leased.session_id)
                taken.append(run_id)
        return taken

    async def resume(self, run_id: str, *, by: str | None = None) -> None:
        """Take ``run_id`` up here unless it executes here already (a queued run in its
        turn, see :meth:`submit`); ``by`` (who asks) is named in the ``run.started``
        event of the execution it starts."""
        if run_id in self._tasks:
            return
        run = await self.get(run_id)
        if by is not None:
            self.executor.started_by[run_id] = by
        if run.status == "queued" and run.lease_owner is None:
            # Never started: it starts in its turn, as a new run would (a limit holds).
            if self.served_slots is None:
                await self.local_starts.start(run)
            return
        try:
            await self.take_up(run, replacing=dead_holder(run))
        except BaseException:
            self.executor.started_by.pop(run_id, None)
            raise

    def spawn(
        self,
        run_id: str,
        *,
        session_id: str | None = None,
        known: tuple[RunRecord, list[Event]] | None = None,
        created: RunCreated | None = None,
    ) -> None:
        """Execute a run this worker holds the lease of, in a task of its own."""
        task = asyncio.create_task(
            self._execute(run_id, session_id, known, created), name=f"agentrt-{run_id}"
        )
        task.add_done_callback(functools.partial(_report_stopped, awaited=self._awaited))
        self._tasks[run_id] = task
        self.stranded.pop(run_id, None)
        self.leases.started(run_id)

    async def _execute(
        self,
        run_id: str,
        session_id: str | None,
        known: tuple[RunRecord, list[Event]] | None,
        created: RunCreated | None,
    ) -> RunResult:
        result: RunResult | None = None
        try:
            if session_id is not None:
                # Turns of one session run in order, here or on other workers: each
                # sees the one before it.
                await after_earlier_turns(self, run_id, session_id, known, created)
                known = None  # the session's history is read after the earlier turns
            result = await self.executor.execute(run_id, known=known, created=created)
            return result
        except asyncio.CancelledError:
            if run_id not in self.cancel_requested:
                raise
            result = await self._end_cancelled(run_id)
            return result
        except StoreError:
            # The store failed: take it up again once it answers.
            times = self._strandings.get(run_id, 0) + 1
            self._strandings[run_id] = times
            self.stranded[run_id] = self._clock() + min(_RETAKE_FIRST_S * 2 ** (times - 1), 30.0)
            raise
        finally:
            if result is not None:
                self._strandings.pop(run_id, None)
            self._tasks.pop(run_id, None)
            self.leases.stopped(run_id)
            self.cancel_requested.discard(run_id)
            self.executor.started_by.pop(run_id, None)  # if it stopped before it started
            self.local_starts.wake()  # a limit held for runs started here may have room
            # A finished run's lease ended with its last append. A stranded one keeps
            # its lease until retaken (or until it runs out: then anyone may take it).
            keep = run_id in self.stranded
            if not keep and (result is None or result.status not in TERMINAL_STATUSES):
                with contextlib.suppress(Exception):
                    await self.store.release_lease(run_id, self.owner)

    async def _end_cancelled(self, run_id: str) -> RunResult:
        """Record the cancelled end of a run stopped before its execution recorded one.

        The execution's last write may still be landing: the end is a conditional
        append, and whatever the log holds then is the answer.
        """
        for _ in range(3):
            run = await self.get(run_id)
            if run.finished:
                break
            with contextlib.suppress(LeaseLost):
                return await self.executor.finish_cancelled(run)
        return await self.result_of(await self.get(run_id))

    # --- waiting ----------------------------------------------------------------

    async def wait(self, run_id: str) -> RunResult:
        """Wait until the run is finished or waiting for a person.

        A run executing here is awaited directly. One executing elsewhere is
        watched through the store: it is read again only when it was written, or
        when its lease runs out. A run that nobody executes any more (its process
        was killed, its lease expired) is taken up here rather than waited on
        forever.
        """
        task = self._tasks.get(run_id)
        if task is not None:
            self._awaited.add(run_id)
            return await asyncio.shield(task)
        async with self.store.watch() as watch:
            while True:
                task = self._tasks.get(run_id)
                if task is not None:
                    self._awaited.add(run_id)
                    return await asyncio.shield(task)
                run = await self.get(run_id)  # read after the watch opened: no write unheard
                if run.finished or run.status in WAITING_STATUSES:
                    return await self.result_of(run)
                if run.status == "running":
                    await self.adopt(run)
                    if run_id in self._tasks:
                        continue
                await self.until_written(watch, run)

    async def until_written(self, watch: RunWatch, run: RunRecord) -> None:
        """Return when ``run`` was written, when its lease runs out, or when its holder
        on this host died, whichever comes first."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        if run.lease_expires is not None:
            lease_left = min(max(run.lease_expires - self._clock(), 0.0), self.lease_ttl_s)
            deadline = loop.time() + lease_left + 0.05
        holder = run.lease_owner if is_local_owner(run.lease_owner) else None
        while True:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            step = left if holder is None else min(_LIVENESS_S, left or _LIVENESS_S)
            if await watch.changed({run.id}, step):
                return
            if holder is not None and owner_is_dead(holder):
                return

    async def result_of(self, run: RunRecord) -> RunResult:
        """The result recorded for a run (output from its ``run.finished`` event)."""
        return RunView.of(run, await self.store.read_events(run.id)).result()

    # --- cancelling -------------------------------------------------------------

    async def cancel(
        self,
        run_id: str,
        *,
        wait_s: float = 0.0,
        cause: str | None = None,
        by: str | None = None,
    ) -> RunRecord:
        """Cancel a run: here if this worker executes it, else through its owner, or
        directly when nobody executes it (see :func:`~agentrt.engine.run_cancel.cancel`)."""
        return await cancel(self, run_id, wait_s=wait_s, cause=cause, by=by)

    def cancel_here(self, run_id: str) -> asyncio.Task[RunResult] | None:
        """Stop ``run_id``'s execution here, if it executes here: its task, to await."""
        task = self._tasks.get(run_id)
        if task is not None:
            self.cancel_requested.add(run_id)
            task.cancel()
        return task
