"""The embedded runtime: submit, run, resume, replay, fork and cancel runs.

``async with Runtime(store=...) as rt: result = await rt.run("agent", "input")``

``Runtime`` is a facade. Behind it each part has one job: the :class:`Catalog`
(stored resources, resolved into frozen run plans), the :class:`Worker` (takes
runs up under leases, executes, cancels and recovers them; it owns the
executor and the child-run service), :class:`Decisions` (approve, deny,
resolve) and the :class:`Archive` (export, import, fork, gc).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import aiohttp

from agentrt._owner import new_owner_id
from agentrt.engine.archive import Archive
from agentrt.engine.budget_raise import BudgetAddition, reopen
from agentrt.engine.budget_scopes import BudgetScope
from agentrt.engine.catalog import Catalog
from agentrt.engine.decisions import Decisions
from agentrt.engine.executor import Executor
from agentrt.engine.hooks import HookPhase, HookSet
from agentrt.engine.journal import EventObserver
from agentrt.engine.live import LiveStreams
from agentrt.engine.plans import RunSpec, with_tags
from agentrt.engine.queue_places import QueuePlace, places_of
from agentrt.engine.result import RunResult
from agentrt.engine.scratch import ScratchSpace
from agentrt.engine.serving import Serving
from agentrt.engine.session_view import SessionView, list_sessions, read_session
from agentrt.engine.tenant_budgets import admission_refusal, first_step_floor
from agentrt.engine.worker import Worker
from agentrt.errors import BudgetExhausted, ConflictError, UsageError
from agentrt.settings import Settings
from agentrt.spec.agent_spec import PRIORITIES, PriorityClass
from agentrt.spec.loader import Loaded
from agentrt.spec.resources import Budgets, DoubleTexting, Query, Resource
from agentrt.state import open_store
from agentrt.state.base import GcResult, ResourceRecord, RunRecord, Store
from agentrt.state.budget_ledger import Amount

__all__ = ["Runtime"]


def _default_scratch(store: Store) -> Path:
    """Scratch directories live beside the store's files, else in the user data dir."""
    if store.local_dir is not None:
        return store.local_dir / "scratch"
    import platformdirs

    return Path(platformdirs.user_data_dir("agentrt")) / "scratch"


class _Parts:
    """What a started runtime is made of; built by :meth:`Runtime.start`."""

    def __init__(
        self, store: Store, catalog: Catalog, worker: Worker, http: aiohttp.ClientSession
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.worker = worker
        self.http = http


class Runtime:
    """An embedded agentrt runtime over a store.

    Args:
        store: a ``Store``, a store URL/path, or ``None`` for the default SQLite file.
        resume_interrupted: on start, resume runs whose owner died or whose lease expired.
        lease_ttl_s: how long a lease lasts without renewal; renewed every third of it.
        hooks: hooks applied to every run, in addition to those of its Agent spec.
        observers: called with ``(run_id, event)`` for every event this runtime records;
            a :class:`LogAwareObserver` is first shown the log of each run taken up.
        settings: what the runtime and its tools are configured with (API keys, secrets,
            proxies, the sandbox directory); by default ``Settings.from_env(environ)``.
        environ: the environment to read settings from (default: the process environment).
        cancel_poll_s: how often the runs executing here are checked for a cancellation
            requested from another process.
        notice_cancels: stop the runs executing here when another process requests
            their cancellation. Off, only the store's refusal of every write but the
            cancelled end stops them.
    """

    def __init__(
        self,
        store: Store | str | Path | None = None,
        *,
        resume_interrupted: bool = True,
        lease_ttl_s: float = 30.0,
        hooks: HookSet | None = None,
        observers: Sequence[EventObserver] = (),
        environ: dict[str, str] | None = None,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        scratch_root: Path | None = None,
        cancel_poll_s: float = 0.5,
        notice_cancels: bool = True,
    ) -> None:
        self._store_arg = store
        self._scratch_root = scratch_root
        self._owns_store = not isinstance(store, Store)
        self._resume_interrupted = resume_interrupted
        self.lease_ttl_s = lease_ttl_s
        self.cancel_poll_s = cancel_poll_s
        self._notice_cancels = notice_cancels
        self.owner = new_owner_id()
        self._clock = clock
        self._hooks = hooks or HookSet()
        self._observers = list(observers)
        self._settings = settings if settings is not None else Settings.from_env(environ)
        self._parts: _Parts | None = None

    # --- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def _started(self) -> _Parts:
        if self._parts is None:
            raise UsageError("the runtime is not started; use `async with Runtime(...)`")
        return self._parts

    @property
    def store(self) -> Store:
        """The store (available after :meth:`start`)."""
        return self._started.store

    @property
    def live(self) -> LiveStreams:
        """Who listens to the runs executed here as they happen: open a feed of a run
        with ``rt.live.listen(run_id)`` and its model steps stream their replies into
        it, piece by piece (available after :meth:`start`; see
        :mod:`agentrt.engine.live`)."""
        return self._started.worker.executor.live

    @property
    def executor(self) -> Executor:
        """The executor (available after :meth:`start`)."""
        return self._started.worker.executor

    async def start(self) -> None:
        """Open the store, start lease renewal, and resume interrupted runs."""
        arg = self._store_arg
        if isinstance(arg, Store):
            store = arg
        else:
            store = await open_store(None if arg is None else str(arg))
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30))
        catalog = Catalog(store, self._clock)
        worker = Worker(
            store,
            catalog,
            owner=self.owner,
            clock=self._clock,
            lease_ttl_s=self.lease_ttl_s,
            cancel_poll_s=self.cancel_poll_s,
            notice_cancels=self._notice_cancels,
            hooks=self._hooks,
            observers=self._observers,
            settings=self._settings,
            http=http,
            scratch=ScratchSpace(self._scratch_root or _default_scratch(store), store),
        )
        self._parts = _Parts(store, catalog, worker, http)
        try:
            worker.start()
            if self._resume_interrupted:
                await worker.recover()
        except BaseException:
            await self.close()  # nothing of a start that failed is left open
            raise

    async def close(self) -> None:
        """Stop runs in flight (they stay resumable), release leases, close everything."""
        parts, self._parts = self._parts, None
        if parts is None:
            return
        await parts.worker.close()
        await parts.http.close()
        if self._owns_store:
            await parts.store.close()

    def add_hook(self, phase: HookPhase, fn: Callable[..., Any]) -> None:
        """Register a hook for every run this runtime executes from now on."""
        self._hooks = self._hooks.add(phase, fn)
        if self._parts is not None:
            self._parts.worker.executor.hooks = self._hooks

    def register_hook(self, name: str, fn: Callable[..., Any]) -> None:
        """Register the hook named ``name`` (a routing classifier or answer check that an
        Agent's ``routing`` names) for every run this runtime executes from now on."""
        self._hooks = self._hooks.register(name, fn)
        if self._parts is not None:
            self._parts.worker.executor.hooks = self._hooks

    def add_observer(self, observer: EventObserver) -> None:
        """Be called with ``(run_id, event)`` for every event this runtime records."""
        self._observers.append(observer)
        if self._parts is not None:
            self._parts.worker.executor.observers = tuple(self._observers)

    # --- resources --------------------------------------------------------------

    async def apply(
        self, resources: Iterable[Resource | Loaded] | str | Path, *, by: str | None = None
    ) -> list[ResourceRecord]:
        """Validate and store resources (objects, or a file/directory of YAML); the
        tenant's audit log records each change as made ``by`` that principal."""
        return await self._started.catalog.apply(resources, by=by)

    async def delete_resource(
        self, kind: str, name: str, *, namespace: str = "default", by: str | None = None
    ) -> bool:
        """Delete a stored resource (recorded in the audit log as ``by`` that principal);
        ``False`` when there was none."""
        return await self._started.catalog.delete(kind, namespace, name, by=by)

    async def resolve_spec(
        self, agent: str, *, namespace: str = "default", budgets: Budgets | None = None
    ) -> RunSpec:
        """The frozen spec a new run of ``agent`` would execute."""
        return await self._started.catalog.agent_plan(agent, namespace=namespace, budgets=budgets)

    # --- runs -------------------------------------------------------------------

    async def submit(
        self,
        agent: str,
        input: str,
        *,
        namespace: str = "default",
        session: str | None = None,
        idempotency_key: str | None = None,
        budgets: Budgets | None = None,
        start: bool = True,
        parent_run: str | None = None,
        target_kind: str | None = None,
        concurrency: int | None = None,
        double_texting: DoubleTexting | None = None,
        principal: str | None = None,
        own_session: bool = False,
        tighten_only: bool = False,
        role: str | None = None,
        tags: Sequence[str] = (),
        priority: PriorityClass | None = None,
    ) -> RunRecord:
        """Create a run of ``agent`` (an Agent, or else a Team of that name) and (by
        default) start executing it here. ``target_kind`` ("Agent" or "Team") says which.
        ``concurrency`` lowers a Team's limit of nodes running at once for this run.
        ``principal`` is who starts it (e.g. an API key's ``key:NAME``): kept on the
        run, in its first event, and on the child runs it starts; a new ``session``
        records it as the session's. With ``own_session``, a session another
        principal started raises ``SessionTaken`` and creates nothing. ``role`` is
        the role of the API key that starts it, which the tenant's Policies may
        select its tool calls by (its child runs inherit it). ``tags`` are the
        query's, frozen with an Agent's run for its ``routing.rules``. ``budgets``
        override the target's; with ``tighten_only``, only where they are lower.
        ``priority`` is its class in its tenant's queue (default: the Agent's).

        With an ``idempotency_key`` already used in the namespace, the existing
        run is returned and nothing new is created; if nobody executes it any more
        (its process was killed), it is resumed here.

        In a ``session`` with an unfinished turn, ``double_texting`` (else the
        target's ``session.double_texting``, ``enqueue`` by default) decides:
        ``reject`` raises ``SessionBusy`` and creates nothing, ``enqueue`` runs the
        turn after the others, ``interrupt`` cancels them and keeps what they
        recorded in the session's history, ``rollback`` cancels them and drops
        them from it (see :mod:`agentrt.engine.turn_order`).

        A new query (not a child run, nor a key used before) is refused with
        ``BudgetExhausted`` and nothing is created when a Budget of its tenant is
        too short of room for its first step
        (:func:`~agentrt.engine.tenant_budgets.admission_refusal`).
        """
        parts = self._started
        created = await parts.catalog.plan(
            agent, input, namespace=namespace, budgets=budgets, kind=target_kind,
            concurrency=concurrency, tighten_only=tighten_only,
        )  # fmt: skip
        if role is not None:
            created = replace(created, role=role)
        if tags:
            created = with_tags(created, tags)
        if parent_run is None:
            agent_name = agent if isinstance(created.plan, RunSpec) else None
            scope = BudgetScope(agent_name, session)
            await self._admit(namespace, idempotency_key, first_step_floor(created), scope)
        return await parts.worker.submit(
            agent, created, namespace=namespace, session=session,
            idempotency_key=idempotency_key, parent_run=parent_run, start=start,
            double_texting=double_texting, principal=principal, own_session=own_session,
            priority=PRIORITIES[priority or created.priority],
        )  # fmt: skip

    async def _admit(
        self, namespace: str, idempotency_key: str | None, floor: Amount, scope: BudgetScope
    ) -> None:
        """Refuse a new query the Budgets it would draw on (its tenant's, its Agent's,
        its session's) have no room for (a retry of one created before gets its run
        back, as ever)."""
        if idempotency_key is not None and await self.store.get_run_by_key(
            namespace, idempotency_key
        ):
            return
        refused = await admission_refusal(self.store, namespace, floor, self._clock(), scope)
        if refused is not None:
            raise BudgetExhausted(f"query refused: {refused}")

    async def submit_query(self, query: Query, *, start: bool = True) -> RunRecord:
        """Submit a ``Query`` resource."""
        return await self.submit(
            query.spec.target,
            query.spec.input,
            namespace=query.namespace,
            session=query.spec.session,
            idempotency_key=query.spec.idempotency_key,
            budgets=query.spec.budgets,
            start=start,
            concurrency=query.spec.concurrency,
            double_texting=query.spec.double_texting,
            tags=query.spec.tags,
            priority=query.spec.priority,
        )

    async def run(self, agent: str, input: str, **kwargs: Any) -> RunResult:
        """Submit a run and wait for its result."""
        run = await self.submit(agent, input, **kwargs)
        return await self.wait(run.id)

    async def wait(self, run_id: str) -> RunResult:
        """Wait until the run is finished or waiting for a person.

        Event-driven: a run executing here is awaited, one executing elsewhere is
        watched through the store. A run nobody executes any more (its process
        was killed, its lease expired) is resumed here rather than waited on.
        """
        return await self._started.worker.wait(run_id)

    async def result_of(self, run: RunRecord) -> RunResult:
        """The result recorded for a run (output from its ``run.finished`` event)."""
        return await self._started.worker.result_of(run)

    async def resume(
        self,
        run_id: str,
        *,
        wait: bool = True,
        by: str | None = None,
        add_budget: BudgetAddition | None = None,
    ) -> RunResult:
        """Resume an interrupted run here and (with ``wait``) wait for it.

        Recorded steps are not performed again. ``by`` (who asks) is named in the
        ``run.started`` event of the execution. A run stopped ``budget_exhausted``
        is reopened first, with ``add_budget`` added to its own limits (see
        :mod:`agentrt.engine.budget_raise`), and goes on from the step it could not
        afford. Any other finished run, or one another live worker holds the lease
        of, raises ``ConflictError``.
        """
        worker = self._started.worker
        run = await worker.get(run_id)
        if run.status == "budget_exhausted":
            run = await reopen(
                self.store, run, add_budget or BudgetAddition(), by=by, now=self._clock()
            )
        elif add_budget is not None:
            raise ConflictError(
                f"run {run_id} is {run.status}: --add-budget raises a run stopped budget_exhausted"
            )
        if run.finished:
            raise ConflictError(
                f"run {run_id} already {run.status}; use `agentrt replay {run_id}` to re-run it "
                f"from its log or `agentrt fork {run_id} --from-step N` to branch it"
            )
        await worker.resume(run_id, by=by)
        if not wait:
            return await worker.result_of(await worker.get(run_id))
        return await worker.wait(run_id)

    def serving(
        self, *, concurrency: int = 100, poll_s: float = 1.0, name: str | None = None
    ) -> Serving:
        """This runtime as a worker of the queue (what ``agentrt worker`` runs): claims
        runs nobody alive executes, up to ``concurrency`` at once, woken by the
        store and polling every ``poll_s``. ``await serving.run(grace_s=...)``;
        ``serving.drain()`` stops it. ``name`` is how ``agentrt workers`` shows it."""
        return Serving(self._started.worker, concurrency=concurrency, poll_s=poll_s, name=name)

    async def serve(self, *, concurrency: int = 100, poll_s: float = 1.0) -> None:
        """Work as a worker of the queue until cancelled (see :meth:`serving`)."""
        await self.serving(concurrency=concurrency, poll_s=poll_s).run(grace_s=0.0)

    async def queue_places(self, runs: Sequence[RunRecord]) -> dict[str, QueuePlace]:
        """Where each queued run of ``runs`` stands (by id), as this runtime's worker
        weighs the queue now (:func:`~agentrt.engine.queue_places.places_of`)."""
        worker = self._started.worker
        return await places_of(worker.store, runs, now=self._clock(), book=worker.schedule)

    def executing(self, run_id: str) -> bool:
        """Whether ``run_id`` executes in this runtime now."""
        return self._started.worker.executing(run_id)

    async def resume_interrupted(self) -> list[str]:
        """Start every run nobody alive executes: queued, lease expired, or owner dead."""
        return await self._started.worker.recover()

    async def replay(self, run_id: str) -> RunResult:
        """Re-execute a finished run from its log: no model or tool calls, same output."""
        return await self.executor.execute(run_id, replay=True)

    async def cancel(self, run_id: str, *, wait_s: float = 0.0, by: str | None = None) -> RunRecord:
        """Cancel a run: here if this runtime executes it, else through its owner, or
        directly when nobody executes it. ``wait_s`` waits up to that long for its end.

        The request is recorded first, with who asks (``by``) and when; from then on
        the store refuses any other step or end of the run, so a run whose cancel was
        acknowledged never ends otherwise. Its sandboxed tool calls in flight are
        killed with it; its ``run.finished`` event names who asked and when.
        """
        return await self._started.worker.cancel(run_id, wait_s=wait_s, by=by)

    # --- sessions ---------------------------------------------------------------

    async def sessions(
        self,
        *,
        namespace: str | None = None,
        principal: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 100,
    ) -> list[SessionView]:
        """Sessions (of ``namespace``, started by ``principal``) with their state, newest
        first; ``before`` is the ``(created_at, id)`` of the last session of the page
        before."""
        return await list_sessions(
            self.store, namespace=namespace, principal=principal, before=before, limit=limit
        )

    async def session(self, session_id: str, *, limit: int = 1000) -> SessionView:
        """A session with its state and its first ``limit`` turns, in turn order."""
        return await read_session(self.store, session_id, limit=limit)

    async def delete_session(self, session_id: str) -> tuple[str, ...]:
        """Delete a session with its turns and their child runs (with their logs and
        scratch directories); returns the runs deleted. Refused (``SessionBusy``)
        while a turn is unfinished. Forks of its turns keep their own sessions."""
        return await self._archive().delete_session(session_id)

    # --- people's decisions -----------------------------------------------------

    async def resolve(
        self,
        run_id: str,
        step: int,
        action: Literal["rerun", "output", "fail"],
        *,
        output: str = "",
        by: str | None = None,
        wait: bool = True,
    ) -> RunResult:
        """Decide a tool step left ``unknown`` by a crash, then continue the run (with
        ``wait``, until it ends or waits again; else it goes on in the background).

        The decision is a compare-and-set on the log it was checked against; a
        ``rerun`` is consumed by one attempt. ``ConflictError`` if the run does not
        wait for a decision on ``step``.
        """
        decisions = Decisions(self._started.worker, self._clock)
        return await decisions.resolve(run_id, step, action, output=output, by=by, wait=wait)

    async def approve(
        self,
        run_id: str,
        step: int,
        *,
        approved: bool = True,
        reason: str | None = None,
        by: str | None = None,
        wait: bool = True,
    ) -> RunResult:
        """Approve (or deny) a tool call a run waits on; the run continues once all are
        decided (with ``wait``, this waits until it ends or waits again). A denial
        reaches the model as the tool's error, with ``reason``. ``ConflictError`` if
        ``step`` does not wait for approval."""
        decisions = Decisions(self._started.worker, self._clock)
        return await decisions.approve(
            run_id, step, approved=approved, reason=reason, by=by, wait=wait
        )

    # --- archive ----------------------------------------------------------------

    def _archive(self) -> Archive:
        worker = self._started.worker
        return Archive(worker, self._started.catalog, worker.executor.scratch, self._clock)

    async def fork(
        self,
        run_id: str,
        *,
        from_step: int,
        model: str | None = None,
        instructions: str | None = None,
        start: bool = True,
        principal: str | None = None,
        role: str | None = None,
    ) -> RunRecord:
        """Start a new run that shares steps ``1..from_step`` of ``run_id`` and diverges after.

        ``model`` and ``instructions`` change what the new run uses from then on;
        ``principal`` is who forks it and ``role`` their key's (the new run's, as for
        :meth:`submit`).
        """
        return await self._archive().fork(
            run_id, from_step=from_step, model=model, instructions=instructions, start=start,
            principal=principal, role=role,
        )  # fmt: skip

    async def gc(self, *, finished_before: float) -> GcResult:
        """Delete finished runs older than the cutoff, their scratch directories, and
        sandbox output artifacts older than the cutoff."""
        return await self._archive().gc(finished_before=finished_before)

    async def export_run(self, run_id: str) -> dict[str, Any]:
        """A run's whole log as JSON-ready data, to archive, audit or replay elsewhere."""
        return await self._archive().export_run(run_id)

    async def import_run(self, data: dict[str, Any]) -> RunRecord:
        """Store a log made by :meth:`export_run` as a new run (a new id), to replay it."""
        return await self._archive().import_run(data)

    # --- sandboxed tool calls ---------------------------------------------------

    async def pause_tools(self, run_id: str) -> int:
        """Freeze the sandboxed tool calls ``run_id`` waits on (here); returns how many.

        Nothing runs while paused, and paused time does not count against the
        calls' timeouts. The run itself waits for them.
        """
        return await self.executor.control_tools(run_id, "pause")

    async def resume_tools(self, run_id: str) -> int:
        """Continue the tool calls frozen by :meth:`pause_tools`."""
        return await self.executor.control_tools(run_id, "resume")

    async def terminate_tools(self, run_id: str) -> int:
        """Kill the sandboxed calls ``run_id`` waits on; the model sees them ``terminated``."""
        return await self.executor.control_tools(run_id, "terminate")
