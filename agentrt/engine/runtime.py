"""The embedded runtime: submit, run, resume, replay, fork and cancel runs.

``async with Runtime(store=...) as rt: result = await rt.run("agent", "input")``

A Runtime owns leases on the runs it executes and renews them while they run.
When it starts, it resumes runs that were interrupted (their owner process is
gone, or their lease expired) unless told not to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import aiohttp

from agentrt._owner import new_owner_id, owner_is_dead
from agentrt._text import with_article
from agentrt.engine import events as ev
from agentrt.engine.execute import Executor
from agentrt.engine.hooks import HookPhase, HookSet
from agentrt.engine.journal import EventObserver, undecided_steps
from agentrt.engine.result import RunResult
from agentrt.engine.scratch import ScratchSpace
from agentrt.engine.snapshot import RunSpec
from agentrt.errors import (
    AgentrtError,
    CancelRequested,
    ConflictError,
    LeaseLost,
    NotFoundError,
    UsageError,
)
from agentrt.spec.callables import check_callables
from agentrt.spec.loader import Loaded, load_paths
from agentrt.spec.refs import check_references, key_of
from agentrt.spec.resources import Agent, Budgets, Model, Query, Resource, Team, Tool
from agentrt.spec.team import team_graph
from agentrt.state import open_store
from agentrt.state.base import (
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    Event,
    EventDraft,
    GcResult,
    NewRun,
    ResourceRecord,
    RunRecord,
    RunUpdate,
    SessionRecord,
    Store,
    Usage,
)
from agentrt.tools.agent import ChildOutcome, ChildRequest

__all__ = ["Runtime", "new_run_id"]

log = logging.getLogger(__name__)

_STEP_EVENTS = frozenset(
    {
        ev.MODEL_CALL,
        ev.MODEL_ERROR,
        ev.MODEL_RESULT,
        ev.TOOL_CALL,
        ev.TOOL_RESULT,
        ev.TOOL_UNKNOWN,
        ev.TOOL_DECISION,
    }
)


# A decision checked against a log that moved before it was written is checked again
# against the new log, this many times at most.
_DECIDE_TRIES = 5


def _dead_holder(run: RunRecord) -> str | None:
    """The run's lease holder when it is a process known to be gone, else ``None``.

    Passed as ``replacing`` to :meth:`Store.acquire_lease`: the takeover then
    succeeds only if that same holder still has the lease.
    """
    holder = run.lease_owner
    return holder if holder is not None and owner_is_dead(holder) else None


def _orphaned(run: RunRecord, now: float) -> bool:
    """Unfinished, not waiting for a person, and nobody alive executes it."""
    if run.finished or run.status in WAITING_STATUSES:
        return False
    if run.lease_owner is None or run.lease_expires is None or run.lease_expires <= now:
        return True
    return _dead_holder(run) is not None


def new_run_id() -> str:
    """A run id that sorts by creation time: ``run_`` + ms timestamp + randomness."""
    return f"run_{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


def _remove_old_artifacts(cutoff: float) -> int:
    """Delete full-output artifacts of sandboxed calls written before ``cutoff``."""
    from agentrt.tools.code import default_workdir

    folder = default_workdir() / "artifacts"
    removed = 0
    for path in folder.glob("*") if folder.exists() else []:
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def _default_scratch(store: Store) -> Path:
    """Scratch directories live beside the SQLite file, else in the user data dir."""
    path = getattr(store, "path", None)
    if path is not None and str(path) != ":memory:":
        return Path(str(path)).parent / "scratch"
    import platformdirs

    return Path(platformdirs.user_data_dir("agentrt")) / "scratch"


def _report_stopped(task: asyncio.Task[RunResult]) -> None:
    """Log an execution that stopped on an error (a store failure, a lost lease).

    Whoever waits on the run gets the error too; a worker has no one waiting, and
    the error would otherwise surface only as "Task exception was never retrieved".
    The run keeps what it recorded and is resumed later.
    """
    if task.cancelled() or task.exception() is None:
        return
    log.error(
        "%s stopped before its end; it stays resumable",
        task.get_name().removeprefix("agentrt-"),
        exc_info=task.exception(),
    )


def _usage_of(events: list[dict[str, Any]]) -> Usage:
    """What the steps of an exported log consumed."""
    usage = Usage()
    for e in events:
        if e["type"] == ev.MODEL_RESULT:
            data = e["data"]
            usage += Usage(data.get("in", 0), data.get("out", 0), data.get("cost", 0.0), 1, 0)
        elif e["type"] == ev.TOOL_CALL:
            usage += Usage(tool_calls=1)
    return usage


class Runtime:
    """An embedded agentrt runtime over a store.

    Args:
        store: a ``Store``, a store URL/path, or ``None`` for the default SQLite file.
        resume_interrupted: on start, resume runs whose owner died or whose lease expired.
        lease_ttl_s: how long a lease lasts without renewal; renewed every third of it.
        hooks: hooks applied to every run, in addition to those of its Agent spec.
        observers: called with ``(run_id, event)`` for every event this runtime records;
            a :class:`LogAwareObserver` is first shown the log of each run taken up.
        environ: environment for API keys (defaults to ``os.environ`` at the model factory).
        cancel_poll_s: how often the runs executing here are checked for a cancellation
            requested from another process.
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
        clock: Callable[[], float] = time.time,
        scratch_root: Path | None = None,
        cancel_poll_s: float = 0.5,
    ) -> None:
        self._store_arg = store
        self._scratch_root = scratch_root
        self._owns_store = not isinstance(store, Store)
        self._resume_interrupted = resume_interrupted
        self.lease_ttl_s = lease_ttl_s
        self.cancel_poll_s = cancel_poll_s
        self.owner = new_owner_id()
        self._clock = clock
        self._hooks = hooks or HookSet()
        self._observers = list(observers)
        self._environ = environ
        self._store: Store | None = store if isinstance(store, Store) else None
        self._executor: Executor | None = None
        self._http: aiohttp.ClientSession | None = None
        self._tasks: dict[str, asyncio.Task[RunResult]] = {}
        self._children: dict[str, set[str]] = {}  # parent run -> its child runs started here
        # Weak: a session's lock lives only while a turn of it runs or waits.
        self._session_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._heartbeat: asyncio.Task[None] | None = None
        self._cancel_watch: asyncio.Task[None] | None = None
        self._parsed_resources: dict[tuple[str, str, str, int, float], Any] = {}
        self._specs: dict[tuple[Any, ...], tuple[RunSpec, dict[str, Any]]] = {}

    # --- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def store(self) -> Store:
        """The store (available after :meth:`start`)."""
        if self._store is None:
            raise UsageError("the runtime is not started; use `async with Runtime(...)`")
        return self._store

    @property
    def executor(self) -> Executor:
        """The executor (available after :meth:`start`)."""
        if self._executor is None:
            raise UsageError("the runtime is not started; use `async with Runtime(...)`")
        return self._executor

    async def start(self) -> None:
        """Open the store, start lease renewal, and resume interrupted runs."""
        if self._store is None:
            arg = self._store_arg
            self._store = await open_store(None if arg is None else str(arg))
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        )
        self._executor = Executor(
            store=self._store,
            owner=self.owner,
            clock=self._clock,
            hooks=self._hooks,
            observers=self._observers,
            environ=self._environ,
            http=self._http,
        )
        self._executor.child_runner = self._run_child
        self._executor.stop_children = self._stop_children
        self._executor.child_ended = self._wake_parent
        self._executor.scratch = ScratchSpace(self._scratch_root or _default_scratch(self._store))
        self._heartbeat = asyncio.create_task(self._renew_leases(), name="agentrt-leases")
        self._cancel_watch = asyncio.create_task(self._watch_cancels(), name="agentrt-cancels")
        if self._resume_interrupted:
            await self.resume_interrupted()

    async def close(self) -> None:
        """Stop runs in flight (they stay resumable), release leases, close everything."""
        for watcher in (self._heartbeat, self._cancel_watch):
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        self._heartbeat = self._cancel_watch = None
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._executor is not None:
            await self._executor.close()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._store is not None and self._owns_store:
            await self._store.close()
            self._store = None

    def add_hook(self, phase: HookPhase, fn: Callable[..., Any]) -> None:
        """Register a hook for every run this runtime executes from now on."""
        self._hooks = self._hooks.add(phase, fn)
        if self._executor is not None:
            self._executor.hooks = self._hooks

    def add_observer(self, observer: EventObserver) -> None:
        """Be called with ``(run_id, event)`` for every event this runtime records."""
        self._observers.append(observer)
        if self._executor is not None:
            self._executor.observers = tuple(self._observers)

    # --- resources --------------------------------------------------------------

    async def apply(
        self, resources: Iterable[Resource | Loaded] | str | Path
    ) -> list[ResourceRecord]:
        """Validate and store resources (objects, or a file/directory of YAML).

        References are checked against the resources given and those stored, and
        every ``module:function`` a resource names must import.
        """
        if isinstance(resources, str | Path):
            loaded = load_paths([resources])
        else:
            loaded = [
                r if isinstance(r, Loaded) else Loaded(r, "<python>", None) for r in resources
            ]
        stored = await self.store.list_resources()
        check_references(loaded, known={(r.kind, r.namespace, r.name) for r in stored})
        check_callables(loaded)
        records = []
        for item in loaded:
            if isinstance(item.resource, Query):
                continue  # a Query is submitted, not stored; see `submit_query`
            kind, namespace, name = key_of(item.resource)
            body = item.resource.model_dump(mode="json", exclude_defaults=True)
            body.setdefault("metadata", {})["namespace"] = namespace
            records.append(
                await self.store.put_resource(kind, namespace, name, body, now=self._clock())
            )
        return records

    async def resolve_spec(
        self, agent: str, *, namespace: str = "default", budgets: Budgets | None = None
    ) -> RunSpec:
        """The frozen spec a new run of ``agent`` would execute."""
        return (await self._resolve(agent, namespace, budgets))[0]

    async def _resolve(
        self, agent: str, namespace: str, budgets: Budgets | None
    ) -> tuple[RunSpec, dict[str, Any]]:
        # One read of the namespace's resources; parsing is cached per generation,
        # and so is the resulting spec, so a busy agent costs one query per run.
        records = {
            (r.kind, r.name): r for r in await self.store.list_resources(namespace=namespace)
        }
        agent_res = self._parsed(records, Agent, namespace, agent)
        names = [agent_res.spec.model]
        if agent_res.spec.memory.session.summary_model is not None:
            names.append(agent_res.spec.memory.session.summary_model)
        models: dict[str, Any] = {}
        while names:
            name = names.pop()
            if name not in models:
                models[name] = self._parsed(records, Model, namespace, name).spec
                names.extend(models[name].fallbacks)
        tools = {n: self._parsed(records, Tool, namespace, n).spec for n in agent_res.spec.tools}
        stamp = (
            namespace,
            agent,
            tuple(sorted((k, n, r.generation, r.updated_at) for (k, n), r in records.items())),
            None if budgets is None else budgets.model_dump_json(exclude_none=True),
        )
        cached = self._specs.get(stamp)
        if cached is None:
            spec = RunSpec(
                agent=agent,
                namespace=namespace,
                agent_spec=agent_res.spec,
                models=models,
                tools=tools,
                budgets=agent_res.spec.budgets.merged(budgets),
            )
            cached = self._specs[stamp] = (spec, spec.to_data())
            if len(self._specs) > 256:
                self._specs.pop(next(iter(self._specs)))
        return cached

    def _parsed(
        self,
        records: dict[tuple[str, str], ResourceRecord],
        cls: type[Any],
        namespace: str,
        name: str,
    ) -> Any:
        kind = cls.__name__
        record = records.get((kind, name))
        if record is None:
            raise NotFoundError(
                f"{kind} {name!r} not found in namespace {namespace!r}; "
                f"define it and run `agentrt apply -f FILE`"
            )
        # updated_at too: a deleted and re-created resource restarts at generation 1.
        key = (kind, namespace, name, record.generation, record.updated_at)
        parsed = self._parsed_resources.get(key)
        if parsed is None:
            parsed = self._parsed_resources[key] = cls.model_validate(record.body)
        return parsed

    async def _get(self, cls: type[Any], namespace: str, name: str) -> Any:
        kind = cls.__name__
        record = await self.store.get_resource(kind, namespace, name)
        if record is None:
            raise NotFoundError(
                f"{kind} {name!r} not found in namespace {namespace!r}; "
                f"define it and run `agentrt apply -f FILE`"
            )
        return cls.model_validate(record.body)

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
    ) -> RunRecord:
        """Create a run of ``agent`` (an Agent, or else a Team of that name) and (by
        default) start executing it here. ``target_kind`` ("Agent" or "Team") says which.
        ``concurrency`` lowers a Team's limit of nodes running at once for this run.

        With an ``idempotency_key`` already used in the namespace, the existing
        run is returned and nothing new is created; if nobody executes it any more
        (its process was killed), it is resumed here.
        """
        first_data = await self._created_data(
            agent, input, namespace, budgets, target_kind, concurrency
        )
        now = self._clock()
        if session is not None:
            stored = await self.store.create_session(SessionRecord(session, namespace, now))
            if stored.namespace != namespace:
                raise ConflictError(
                    f"session {session!r} belongs to namespace {stored.namespace!r}, "
                    f"not {namespace!r}"
                )
        first = EventDraft(ev.RUN_CREATED, first_data, now)
        owner = self.owner if start else None
        expires = now + self.lease_ttl_s if start else None
        run, created = await self.store.create_run(
            NewRun(
                new_run_id(),
                namespace,
                agent,
                now,
                session,
                idempotency_key,
                parent_run=parent_run,
                lease_owner=owner,
                lease_expires=expires,
            ),
            [first],
        )
        if created and start:
            # Created leased to us, and its whole log is the event just written.
            known = (run, [Event(1, first.type, first.data, first.ts)])
            self._spawn(run.id, session_id=run.session_id, known=known)
        elif start:
            await self._adopt(run, queued=True)
        return run

    async def _where_else(self, target: str, namespace: str) -> str:
        """The fix for a target not found: the namespaces that have it, else to apply it."""
        others = sorted(
            {
                r.namespace
                for kind in ("Agent", "Team")
                for r in await self.store.list_resources(kind)
                if r.name == target and r.namespace != namespace
            }
        )
        if not others:
            return "define it and run `agentrt apply -f FILE`"
        where = ", ".join(repr(ns) for ns in others)
        return f"it is in namespace {where}: run it there (`-n {others[0]}`)"

    async def _created_data(
        self,
        target: str,
        input: str,
        namespace: str,
        budgets: Budgets | None,
        kind: str | None,
        concurrency: int | None = None,
    ) -> dict[str, Any]:
        """What ``run.created`` freezes: the agent's run spec, or the whole Team."""
        if kind != "Team":
            try:
                _, spec_data = await self._resolve(target, namespace, budgets)
                if concurrency is not None:
                    raise UsageError(
                        f"concurrency limits a Team's nodes; {target!r} is an Agent "
                        "(its parallel tool calls follow loop.parallel_tool_calls)"
                    )
                return {"input": input, "spec": spec_data}
            except NotFoundError:
                if kind == "Agent":
                    raise
        team_record = await self.store.get_resource("Team", namespace, target)
        if team_record is None:
            raise NotFoundError(
                f"no Agent or Team named {target!r} in namespace {namespace!r}; "
                + await self._where_else(target, namespace)
            )
        team = Team.model_validate(team_record.body)
        limits: dict[str, Any] = {}
        if budgets is not None:
            limits["budgets"] = team.spec.budgets.merged(budgets)
        if concurrency is not None:
            limits["concurrency"] = min(team.spec.concurrency, concurrency)
        if limits:
            team = team.model_copy(update={"spec": team.spec.model_copy(update=limits)})
        # Models that route are frozen with the team, as an agent run freezes its models.
        models, tools = {}, {}
        for node in team_graph(team).nodes:
            if node.route is not None and node.route.model is not None:
                spec = (await self._get(Model, namespace, node.route.model)).spec
                models[node.route.model] = spec.model_dump(mode="json", exclude_defaults=True)
            if node.tool is not None:
                tool = (await self._get(Tool, namespace, node.tool)).spec
                tools[node.tool] = tool.model_dump(mode="json", exclude_defaults=True)
        data = {"input": input, "team": team.model_dump(mode="json", exclude_defaults=True)}
        if models:
            data["models"] = models
        if tools:
            data["tools"] = tools
        return data

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
        )

    async def run(self, agent: str, input: str, **kwargs: Any) -> RunResult:
        """Submit a run and wait for its result."""
        run = await self.submit(agent, input, **kwargs)
        return await self.wait(run.id)

    async def wait(self, run_id: str, *, poll_s: float = 0.2) -> RunResult:
        """Wait until the run is finished or waiting for a person.

        A run that another process executed and that nobody executes any more (the
        process was killed, its lease expired) is resumed here rather than waited
        on forever.
        """
        while True:
            task = self._tasks.get(run_id)
            if task is not None:
                return await asyncio.shield(task)
            run = await self._run(run_id)
            if run.status in TERMINAL_STATUSES or run.status in WAITING_STATUSES:
                return await self.result_of(run)
            if run.status == "running":
                await self._adopt(run)
                if run_id in self._tasks:
                    continue
            await asyncio.sleep(poll_s)

    async def _adopt(self, run: RunRecord, *, queued: bool = False) -> None:
        """Start executing ``run`` here if nobody alive executes it (``queued``: also a
        run no worker has started yet). Losing the race to another taker is fine."""
        if run.id in self._tasks or not _orphaned(run, self._clock()):
            return
        if run.status == "queued" and not queued:
            return
        with contextlib.suppress(ConflictError):
            await self._start(run, replacing=_dead_holder(run))

    async def result_of(self, run: RunRecord) -> RunResult:
        """The result recorded for a run (output from its ``run.finished`` event)."""
        events = await self.store.read_events(run.id, after_seq=max(run.last_seq - 1, 0))
        finished = next((e for e in events if e.type == ev.RUN_FINISHED), None)
        output = finished.data.get("output") if finished else None
        children = int(finished.data.get("child_runs", 0)) if finished else 0
        steps = max((e.step or 0 for e in await self.store.read_events(run.id)), default=0)
        return RunResult(run.id, run.status, output, run.reason, run.usage, steps, children)

    async def resume(self, run_id: str) -> RunResult:
        """Resume an interrupted run here and wait for it.

        Recorded steps are not performed again. Refused while another live
        worker holds the run's lease.
        """
        run = await self._run(run_id)
        if run.finished:
            raise UsageError(
                f"run {run_id} already {run.status}; use `agentrt replay {run_id}` to re-run it "
                f"from its log or `agentrt fork {run_id} --from-step N` to branch it"
            )
        if run_id in self._tasks:
            return await self.wait(run_id)
        await self._start(run, replacing=_dead_holder(run))
        return await self.wait(run_id)

    async def resume_interrupted(self) -> list[str]:
        """Start every run whose owner is gone: dead on this host, or lease expired."""
        resumed = []
        for run in await self.store.list_runs(statuses=["running", "queued"], limit=1000):
            if run.id in self._tasks:
                continue
            if _orphaned(run, self._clock()):
                with contextlib.suppress(ConflictError):
                    await self._start(run, replacing=_dead_holder(run))
                    resumed.append(run.id)
        return resumed

    async def replay(self, run_id: str) -> RunResult:
        """Re-execute a finished run from its log: no model or tool calls, same output."""
        return await self.executor.execute(run_id, replay=True)

    async def fork(
        self,
        run_id: str,
        *,
        from_step: int,
        model: str | None = None,
        instructions: str | None = None,
        start: bool = True,
    ) -> RunRecord:
        """Start a new run that shares steps ``1..from_step`` of ``run_id`` and diverges after.

        ``model`` and ``instructions`` change what the new run uses from then on.
        """
        parent = await self._run(run_id)
        events = await self.store.read_events(run_id)
        last_step = max((e.step or 0 for e in events), default=0)
        if not 0 <= from_step <= last_step:
            raise UsageError(f"--from-step must be between 0 and {last_step} for run {run_id}")
        created = events[0]
        spec = RunSpec.from_data(created.data["spec"])
        if model is not None:
            model_res = await self._get(Model, parent.namespace, model)
            agent_spec = spec.agent_spec.model_copy(update={"model": model})
            spec = spec.model_copy(
                update={"agent_spec": agent_spec, "models": {**spec.models, model: model_res.spec}}
            )
        if instructions is not None:
            agent_spec = spec.agent_spec.model_copy(update={"instructions": instructions})
            spec = spec.model_copy(update={"agent_spec": agent_spec})
        spec = RunSpec.model_validate(spec.model_dump())
        now = self._clock()
        session_id = None
        if parent.session_id is not None:
            # The fork's session starts from the parent's history before the parent's turn.
            session_id = f"{parent.session_id}~{secrets.token_hex(3)}"
            await self.store.create_session(
                SessionRecord(session_id, parent.namespace, now, parent.session_id, parent.turn)
            )
        data = {**created.data, "spec": spec.to_data(), "fork": {"run": run_id, "step": from_step}}
        copied = [EventDraft(ev.RUN_CREATED, data, now)]
        copied += [
            EventDraft(e.type, e.data, e.ts, e.step)
            for e in events
            if e.step is not None and e.step <= from_step and e.type in _STEP_EVENTS
        ]
        run, _ = await self.store.create_run(
            NewRun(
                new_run_id(),
                parent.namespace,
                parent.agent,
                now,
                session_id,
                parent_run=run_id,
                fork_step=from_step,
            ),
            copied,
        )
        scratch = self.executor.scratch
        if scratch is not None:
            await asyncio.to_thread(scratch.restore, run_id, from_step, run.id)
        if start:
            await self._start(run)
        return run

    async def gc(self, *, finished_before: float) -> GcResult:
        """Delete finished runs older than the cutoff, their scratch directories, and
        sandbox output artifacts older than the cutoff."""
        removed = await self.store.gc(finished_before=finished_before)
        scratch = self.executor.scratch
        if scratch is not None and removed.run_ids:
            await asyncio.to_thread(scratch.remove, removed.run_ids)
        await asyncio.to_thread(_remove_old_artifacts, finished_before)
        return removed

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

    async def export_run(self, run_id: str) -> dict[str, Any]:
        """A run's whole log as JSON-ready data, to archive, audit or replay elsewhere."""
        run = await self._run(run_id)
        events = await self.store.read_events(run_id)
        return {
            "format": "agentrt.run/v1",
            "run": {
                "id": run.id,
                "namespace": run.namespace,
                "agent": run.agent,
                "status": run.status,
                "created_at": run.created_at,
            },
            "events": [
                {"seq": e.seq, "type": e.type, "step": e.step, "ts": e.ts, "data": e.data}
                for e in events
            ],
        }

    async def import_run(self, data: dict[str, Any]) -> RunRecord:
        """Store a log made by :meth:`export_run` as a new run (a new id), to replay it."""
        if data.get("format") != "agentrt.run/v1":
            raise UsageError("not an exported run: expected `format: agentrt.run/v1`")
        meta, events = data["run"], data["events"]
        if not events or events[0]["type"] != ev.RUN_CREATED:
            raise UsageError(
                f"an exported run starts with {with_article(ev.RUN_CREATED + ' event')}"
            )
        drafts = [EventDraft(e["type"], e["data"], e["ts"], e["step"]) for e in events]
        run, _ = await self.store.create_run(
            NewRun(new_run_id(), meta["namespace"], meta["agent"], self._clock()), drafts
        )
        status = next((e["data"]["status"] for e in events if e["type"] == ev.RUN_FINISHED), None)
        if status is not None:
            leased = await self.store.acquire_lease(
                run.id, self.owner, self.lease_ttl_s, now=self._clock()
            )  # a new run: nobody else can hold it
            if leased is not None:
                update = RunUpdate(status=status, usage=_usage_of(events))
                await self.store.append_events(
                    run.id, [], expected_seq=leased.last_seq, owner=self.owner, update=update
                )
                await self.store.release_lease(run.id, self.owner)
        return await self._run(run.id)

    async def cancel(self, run_id: str, *, wait_s: float = 0.0) -> RunRecord:
        """Cancel a run: here if this runtime executes it, else through its owner, or
        directly when nobody executes it.

        The request is recorded first; from then on the store refuses any other
        step or end of the run, so a run whose cancel was acknowledged never ends
        otherwise. An owner in another process notices within its
        ``cancel_poll_s``; ``wait_s`` waits up to that long for it to end the run.
        """
        await self._run(run_id)  # a clear error for an unknown run
        run = await self.store.request_cancel(run_id)
        if run.finished:
            return run  # it ended before the request: nothing was acknowledged
        task = self._tasks.get(run_id)
        if task is not None:
            self.executor.cancel_requested.add(run_id)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return await self._run(run_id)
        if _orphaned(run, self._clock()) or run.status in WAITING_STATUSES:
            leased = await self.store.acquire_lease(
                run_id, self.owner, self.lease_ttl_s, now=self._clock(),
                replacing=_dead_holder(run),
            )  # fmt: skip
            if leased is not None:
                try:
                    await self.executor.finish_cancelled(leased)
                finally:
                    await self.store.release_lease(run_id, self.owner)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        run = await self._run(run_id)
        while not run.finished and loop.time() < deadline:
            await asyncio.sleep(min(0.05, self.cancel_poll_s))
            run = await self._run(run_id)
        return run

    async def resolve(
        self,
        run_id: str,
        step: int,
        action: Literal["rerun", "output", "fail"],
        *,
        output: str = "",
        by: str | None = None,
    ) -> RunResult:
        """Decide a tool step left ``unknown`` by a crash, then continue the run.

        The decision is recorded once, as a compare-and-set on the log it was
        checked against, together with the run going back to ``running`` under
        this runtime's lease; only then does anything run. ``rerun`` is consumed
        by one attempt: if the process dies during it, the step is ``unknown``
        again, never performed a third time unasked.
        """

        def check(run: RunRecord, events: list[Event]) -> RunUpdate | None:
            if run.status != "waiting":
                raise UsageError(_not_waiting(run, "for a decision on a step"))
            undecided = undecided_steps(events)
            if step not in undecided:
                raise UsageError(
                    f"step {step} of run {run_id} is not undecided; undecided: {undecided}"
                )
            return RunUpdate(status="running")

        data: dict[str, Any] = {"action": action}
        if action != "rerun":
            data["output"] = output
        if by:
            data["by"] = by
        run, _ = await self._decide(run_id, ev.TOOL_DECISION, data, step, check)
        self._spawn(run_id, session_id=run.session_id)
        return await self.wait(run_id)

    async def _decide(
        self,
        run_id: str,
        type: str,
        data: dict[str, Any],
        step: int,
        check: Callable[[RunRecord, list[Event]], RunUpdate | None],
    ) -> tuple[RunRecord, RunUpdate | None]:
        """Record a person's decision on a run that waits, holding its lease.

        ``check`` validates the decision against the run and its log (raising
        ``UsageError``) and says how the run row changes with it. The append is
        conditional on the log being the one checked: when another process wrote
        meanwhile (a second decision, a resume), the decision is checked again on
        what the log holds now, so two decisions never both take effect. Returns
        the run as checked and the update; the lease stays held.
        """
        for _ in range(_DECIDE_TRIES):
            run = await self._run(run_id)
            events = await self.store.read_events(run_id)
            check(run, events)  # clear errors before any lease is taken
            leased = await self.store.acquire_lease(
                run_id, self.owner, self.lease_ttl_s, now=self._clock(),
                replacing=_dead_holder(run),
            )  # fmt: skip
            if leased is None:
                holder = (await self._run(run_id)).lease_owner
                raise ConflictError(
                    f"run {run_id} is being executed by {holder}; decide when it waits again"
                )
            seq = events[-1].seq if events else 0
            try:
                if leased.last_seq == seq:
                    update = check(leased, events)
                    await self.store.append_events(
                        run_id,
                        [EventDraft(type, data, self._clock(), step)],
                        expected_seq=seq,
                        owner=self.owner,
                        update=update,
                    )
                    return leased, update
            except LeaseLost:
                pass  # the log moved since it was read: check again
            except CancelRequested:
                # Holding the lease, end it as its canceller asked.
                with contextlib.suppress(AgentrtError):
                    await self.executor.finish_cancelled(leased)
                await self.store.release_lease(run_id, self.owner)
                raise ConflictError(
                    f"run {run_id} was cancelled; the decision was not recorded"
                ) from None
            except BaseException:
                await self.store.release_lease(run_id, self.owner)
                raise
            await self.store.release_lease(run_id, self.owner)
        raise ConflictError(f"run {run_id} kept changing while deciding step {step}; try again")

    async def approve(
        self,
        run_id: str,
        step: int,
        *,
        approved: bool = True,
        reason: str | None = None,
        by: str | None = None,
    ) -> RunResult:
        """Approve (or deny) a tool call a run waits on; the run continues once all are decided.

        A denial reaches the model as the tool's error, with ``reason``. Like
        :meth:`resolve`, the decision is a compare-and-set on the log; the last
        one puts the run back to ``running`` in the same write.
        """

        def check(run: RunRecord, events: list[Event]) -> RunUpdate | None:
            if run.status != "waiting_approval":
                raise UsageError(_not_waiting(run, "for approval"))
            requested = {e.step for e in events if e.type == ev.APPROVAL_REQUESTED}
            decided = {e.step for e in events if e.type == ev.APPROVAL_DECIDED}
            undecided = sorted(s for s in requested - decided if s is not None)
            if step not in undecided:
                raise UsageError(
                    f"step {step} of run {run_id} does not wait for approval; waiting: {undecided}"
                )
            # Others still wait: the run stays where it is.
            return RunUpdate(status="running") if len(undecided) == 1 else None

        data: dict[str, Any] = {"approved": approved}
        if reason:
            data["reason"] = reason
        if by:
            data["by"] = by
        run, update = await self._decide(run_id, ev.APPROVAL_DECIDED, data, step, check)
        if update is None:
            await self.store.release_lease(run_id, self.owner)
            return await self.result_of(await self._run(run_id))
        self._spawn(run_id, session_id=run.session_id)
        return await self.wait(run_id)

    async def _run_child(self, request: ChildRequest) -> ChildOutcome:
        """Run (or find again, by its key) the child run of an agent tool call."""
        run = await self.submit(
            request.agent,
            request.input,
            namespace=request.namespace,
            idempotency_key=request.idempotency_key,
            budgets=request.budgets,
            parent_run=request.parent_run,
            target_kind=request.kind,
        )
        self._children.setdefault(request.parent_run, set()).add(run.id)
        # Found again after the parent's crash, an interrupted child was resumed by submit.
        result = await self.wait(run.id)
        return ChildOutcome(
            run.id, result.status, result.output, result.reason, result.usage, result.child_runs
        )

    async def _wake_parent(self, parent_id: str, child_id: str) -> None:
        """Continue a team run that waits on ``child_id``, now that the child has ended."""
        parent = await self.store.get_run(parent_id)
        if parent is None or parent.status != "waiting" or parent.id in self._tasks:
            return
        last = (await self.store.read_events(parent.id, after_seq=parent.last_seq - 1))[-1:]
        if not last or child_id not in last[0].data.get("waits_on", ()):
            return
        with contextlib.suppress(ConflictError):  # another runtime continues it
            await self._start(parent)

    async def _stop_children(self, parent_run: str) -> int:
        """Cancel the unfinished child runs of ``parent_run`` (its nodes, its agent tools'
        calls), and theirs in turn: the parent was cancelled, timed out or failed."""
        stopped = 0
        for child in sorted(self._children.pop(parent_run, ())):
            stopped += await self._stop_children(child)
            run = await self.store.get_run(child)
            if run is not None and not run.finished:
                await self.cancel(child)
                stopped += 1
        return stopped

    # --- internals --------------------------------------------------------------

    async def _run(self, run_id: str) -> RunRecord:
        run = await self.store.get_run(run_id)
        if run is None:
            raise NotFoundError(f"run {run_id!r} not found; list runs with `agentrt runs list`")
        return run

    async def _start(self, run: RunRecord, *, replacing: str | None = None) -> None:
        leased = await self.store.acquire_lease(
            run.id, self.owner, self.lease_ttl_s, now=self._clock(), replacing=replacing
        )
        if leased is None:
            raise ConflictError(
                f"run {run.id} is owned by {run.lease_owner} (lease until "
                f"{run.lease_expires}); it resumes elsewhere or after the lease expires"
            )
        self._spawn(run.id, session_id=run.session_id)

    def _spawn(
        self,
        run_id: str,
        *,
        session_id: str | None = None,
        known: tuple[RunRecord, list[Event]] | None = None,
    ) -> None:
        task = asyncio.create_task(
            self._execute(run_id, session_id, known), name=f"agentrt-{run_id}"
        )
        task.add_done_callback(_report_stopped)
        self._tasks[run_id] = task

    async def _execute(
        self, run_id: str, session_id: str | None, known: tuple[RunRecord, list[Event]] | None
    ) -> RunResult:
        result: RunResult | None = None
        try:
            if session_id is None:
                result = await self.executor.execute(run_id, known=known)
            else:
                # Turns of one session run in order: each sees the one before it
                # (and so its log must be read after the lock is taken).
                lock = self._session_locks.get(session_id)
                if lock is None:
                    lock = self._session_locks[session_id] = asyncio.Lock()
                async with lock:
                    result = await self.executor.execute(run_id)
            return result
        except asyncio.CancelledError:
            if run_id not in self.executor.cancel_requested:
                raise
            result = await self._end_cancelled(run_id)
            return result
        finally:
            self._tasks.pop(run_id, None)
            self._children.pop(run_id, None)
            self.executor.cancel_requested.discard(run_id)
            if result is None or result.status not in TERMINAL_STATUSES:
                # A finished run's lease ended with its last append.
                with contextlib.suppress(Exception):
                    await self.store.release_lease(run_id, self.owner)

    async def _end_cancelled(self, run_id: str) -> RunResult:
        """Record the cancelled end of a run stopped before its execution recorded one.

        The execution's last write may still be landing: the end is a conditional
        append, and whatever the log holds then is the answer.
        """
        for _ in range(3):
            run = await self._run(run_id)
            if run.finished:
                break
            with contextlib.suppress(LeaseLost):
                return await self.executor.finish_cancelled(run)
        return await self.result_of(await self._run(run_id))

    async def _renew_leases(self) -> None:
        interval = self.lease_ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            for run_id, task in list(self._tasks.items()):
                try:
                    held = await self.store.renew_lease(
                        run_id, self.owner, self.lease_ttl_s, now=self._clock()
                    )
                except Exception:
                    continue  # a transient store error: try again next round
                if not held:
                    task.cancel()  # another worker took the run over; stop writing

    async def _watch_cancels(self) -> None:
        """Stop the runs executing here whose cancellation another process requested.

        One cheap indexed read per round, and none while nothing runs here.
        """
        while True:
            await asyncio.sleep(self.cancel_poll_s)
            if not self._tasks:
                continue
            try:
                wanted = await self.store.cancel_requests(list(self._tasks))
            except Exception:
                continue  # a transient store error: try again next round
            for run_id in wanted - self.executor.cancel_requested:
                task = self._tasks.get(run_id)
                if task is not None:
                    self.executor.cancel_requested.add(run_id)
                    task.cancel()


def _not_waiting(run: RunRecord, what: str) -> str:
    """Why a decision does not apply to ``run`` now, and what to do instead."""
    message = f"run {run.id} is {run.status}, not waiting {what}"
    if run.status == "running" and _dead_holder(run) is not None:
        message += f"; its last process stopped: continue it with `agentrt resume {run.id}`"
    return message
