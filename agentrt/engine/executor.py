"""Execute one run from its log: agent and team runs, live, resumed or replayed, alike.

The executor reads a run's log, builds its execution (an agent's loop or a
team's graph), and drives it. Live, every way it can stop becomes a recorded
``run.waiting`` or ``run.finished`` event through one mapping
(:mod:`agentrt.engine.ending`); on replay, the same mapping says where the
replay arrived, and it must be where the log says the run ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agentrt import _json
from agentrt.engine import events as ev
from agentrt.engine.agent_execution import AgentExecution
from agentrt.engine.agent_loop import RunContext
from agentrt.engine.audit_trail import stopped
from agentrt.engine.budget_raise import started_at, with_additions
from agentrt.engine.budget_scopes import scope_of
from agentrt.engine.children import ChildRunService
from agentrt.engine.circuit_breakers import Circuits
from agentrt.engine.conversation import history_digest
from agentrt.engine.ending import CANCELLED, Ending, live_ending, replayed_status
from agentrt.engine.execution import Execution
from agentrt.engine.history_policy import flatten
from agentrt.engine.hooks import HookSet
from agentrt.engine.journal import EventObserver, Journal
from agentrt.engine.live import LiveStreams
from agentrt.engine.plans import RunCreated, RunSpec, TeamRunSpec
from agentrt.engine.replicas import Replicas
from agentrt.engine.result import RunResult
from agentrt.engine.scratch import ScratchSpace
from agentrt.engine.sessions import SessionTurns
from agentrt.engine.shared import SharedByName
from agentrt.engine.summaries import legacy_summary_event
from agentrt.engine.team_execution import TeamExecution
from agentrt.engine.team_steps import TeamContext, TeamSteps
from agentrt.engine.team_walk import TeamReplay
from agentrt.engine.tenant_budgets import BudgetBook
from agentrt.engine.tool_policies import PolicyBook
from agentrt.errors import (
    AgentrtError,
    CancelRequested,
    NondeterminismError,
    NotFoundError,
    RunError,
    StartError,
    UsageError,
    error_from_dict,
)
from agentrt.models.base import ModelClient
from agentrt.models.factory import create_client
from agentrt.spec.resources import Budgets, ModelSpec, ToolSpec
from agentrt.state.base import (
    TERMINAL_STATUSES,
    Event,
    EventDraft,
    RunRecord,
    RunStatus,
    RunUpdate,
    Store,
)
from agentrt.state.long_term_memory import MemoryStore
from agentrt.tools.agent import AgentToolSet, ChildOutcome, ChildRequest
from agentrt.tools.base import ToolSet
from agentrt.tools.factory import ToolFactory
from agentrt.tools.long_term_memory import MemoryToolSet

__all__ = ["Executor"]

_PREPARED_CACHE_SIZE = 256


@dataclass(frozen=True)
class PreparedSpec:
    """An agent run's plan made ready to execute: reused by every run of the plan."""

    spec: RunSpec
    tools: dict[str, ToolSet]
    hooks: HookSet
    clients: dict[str, ModelClient]


@dataclass
class Executor:
    """Runs runs. Holds the services they share: store, clients, tools, hooks."""

    store: Store
    owner: str
    clock: Callable[[], float]
    hooks: HookSet = field(default_factory=HookSet)
    observers: Sequence[EventObserver] = ()
    live: LiveStreams = field(default_factory=LiveStreams)  # listeners to runs executed here
    environ: dict[str, str] | None = None
    http: aiohttp.ClientSession | None = None
    cancel_requested: set[str] = field(default_factory=set)
    # Runs their worker gives back: each stops before its next step (see Journal.append).
    handing_back: set[str] = field(default_factory=set)
    # Who asked for the next execution of a run (a resume), named in its run.started.
    started_by: dict[str, str] = field(default_factory=dict)
    children: ChildRunService | None = None  # runs, stops and is woken by child runs
    scratch: ScratchSpace | None = None
    tool_factory: ToolFactory = field(default_factory=ToolFactory)  # closed with us
    budgets: BudgetBook | None = None  # the tenants' Budgets, read once a second at most
    policies: PolicyBook = field(default_factory=PolicyBook)  # read once a second at most
    circuits: Circuits = field(default_factory=Circuits)  # model endpoints' breakers, cached
    replicas: Replicas = field(default_factory=Replicas)  # the replica each session sticks to
    _running: dict[str, RunContext] = field(default_factory=dict)
    _journals: dict[str, Journal] = field(default_factory=dict)
    _paused: dict[str, dict[asyncio.Timeout, float]] = field(default_factory=dict)
    _clients: SharedByName[ModelClient] = field(
        default_factory=lambda: SharedByName(lambda client: client.close())
    )
    _tools: SharedByName[ToolSet] = field(
        default_factory=lambda: SharedByName(lambda toolset: toolset.close())
    )
    _prepared: OrderedDict[bytes, PreparedSpec] = field(default_factory=OrderedDict)
    _sessions: SessionTurns | None = None

    async def close(self) -> None:
        """Close model clients and tool sets (stopping the processes tools started)."""
        self._prepared.clear()
        await self._clients.close()
        await self._tools.close()
        await self.tool_factory.close()

    # --- what runs share --------------------------------------------------------

    def client(self, name: str, spec: ModelSpec) -> ModelClient:
        """A model client for a spec, reused across runs with the same spec."""
        key = _json.dumps([name, spec.model_dump(mode="json")])
        client, replaced = self._clients.get(name, key, lambda: self._make_client(name, spec))
        if replaced:
            self._prepared.clear()  # plans prepared with the old client make it again
        return client

    def tool(self, name: str, spec: ToolSpec, *, namespace: str = "") -> ToolSet:
        """A runtime tool for a spec, reused across runs with the same spec.

        A Tool re-applied with another spec gets a new tool set; the old one is
        closed once no execution uses it.
        """
        key = _json.dumps([name, spec.model_dump(mode="json")])
        tool, replaced = self._tools.get(
            (namespace, name), key, lambda: self._make_tool(name, spec)
        )
        if replaced:
            self._prepared.clear()
        return tool

    def _make_client(self, name: str, spec: ModelSpec) -> ModelClient:
        return create_client(spec, name=name, session=self.http, environ=self.environ)

    def _make_tool(self, name: str, spec: ToolSpec) -> ToolSet:
        if spec.kind == "agent":
            if self.children is None:
                raise UsageError(f"Tool {name}: agent tools need a Runtime to run children")
            return AgentToolSet(name, spec, self.children.run)
        if spec.kind == "memory":
            if not isinstance(self.store, MemoryStore):
                raise UsageError(
                    f"Tool {name}: this store ({type(self.store).__name__}) keeps no "
                    "long-term memory; use the SQLite store"
                )
            return MemoryToolSet(name, spec, self.store)
        return self.tool_factory.build(name, spec)

    def prepare(self, created: RunCreated) -> PreparedSpec:
        """An agent run's plan with its tools, hooks and clients, shared by runs of it."""
        prepared = self._prepared.get(created.digest)
        if prepared is not None:
            self._prepared.move_to_end(created.digest)
            return prepared
        spec = created.plan
        if not isinstance(spec, RunSpec):
            raise UsageError("a team run has no agent spec to prepare")
        prepared = PreparedSpec(
            spec,
            {
                name: self.tool(name, spec.tools[name], namespace=spec.namespace)
                for name in spec.agent_spec.tools
            },
            HookSet.from_spec(spec.agent_spec.hooks),
            {name: self.client(name, model) for name, model in spec.models.items()},
        )
        self._prepared[created.digest] = prepared
        if len(self._prepared) > _PREPARED_CACHE_SIZE:
            self._prepared.popitem(last=False)
        return prepared

    @property
    def sessions(self) -> SessionTurns:
        """The sessions' earlier turns, read from the store once each."""
        if self._sessions is None:
            self._sessions = SessionTurns(self.store)
        return self._sessions

    # --- executing a run --------------------------------------------------------

    async def execute(
        self,
        run_id: str,
        *,
        replay: bool = False,
        known: tuple[RunRecord, list[Event]] | None = None,
        created: RunCreated | None = None,
    ) -> RunResult:
        """Run (or resume, or replay) a run to its end or until it needs a person.

        The caller holds the run's lease (except for replay, which writes nothing).
        ``known`` is the run and its whole log when the caller has them already,
        ``created`` its plan when the caller made it (else it is read from the log).
        """
        if known is None:
            found = await self.store.get_run(run_id)
            if found is None:
                raise NotFoundError(f"run {run_id!r} not found")
            run, events = found, await self.store.read_events(run_id)
        else:
            run, events = known
        if not events or events[0].type != ev.RUN_CREATED:
            raise UsageError(f"run {run_id!r} has no {ev.RUN_CREATED} event; its log is damaged")
        if run.cancel_requested and not replay and not run.finished:
            # Cancelled before this execution took it up: it takes no step.
            result = await self.finish_cancelled(run)
        elif replay and (failed := _start_failure(events)) is not None:
            result = RunResult(run_id, "failed", None, failed.message, run.usage)
        else:
            result = await self._build_and_drive(run, events, replay, created)
        ended = result.status in TERMINAL_STATUSES
        if ended and not replay and run.parent_run is not None and self.children is not None:
            await self.children.ended(run.parent_run, run_id)
        return result

    async def _build_and_drive(
        self, run: RunRecord, events: list[Event], replay: bool, created: RunCreated | None
    ) -> RunResult:
        prepared: PreparedSpec | None = None
        try:
            created = with_additions(created or RunCreated.from_data(events[0].data), events)
            execution: Execution
            if isinstance(created.plan, TeamRunSpec):
                execution = self._team_execution(run, events, created.plan, created.input, replay)
            else:
                prepared = self.prepare(created)
                execution = await self._agent_execution(run, events, prepared, created, replay)
        except Exception as exc:  # a tool or hook that does not import, a missing API key
            if replay:
                raise
            error = exc if isinstance(exc, NondeterminismError) else _start_error(exc)
            return await self._end_unstartable(run, events, error)
        if prepared is None:
            return await self._drive(execution, events, replay)
        # Held while the run executes: a tool set retired meanwhile is closed after.
        self._tools.acquire(prepared.tools.values())
        self._clients.acquire(prepared.clients.values())
        try:
            return await self._drive(execution, events, replay)
        finally:
            await self._tools.release(prepared.tools.values())
            await self._clients.release(prepared.clients.values())

    def _journal(
        self, run: RunRecord, events: list[Event], replay: bool, team: Budgets | None = None
    ) -> Journal:
        return Journal(
            self.store,
            run.id,
            events,
            owner=None if replay else self.owner,
            clock=self.clock,
            replay=replay,
            trusted_until=run.fork_step or 0,
            observers=() if replay else self.observers,
            handing_back=self.handing_back,
            token=None if replay else run.lease_token,
            budgets=self.budgets,
            principal=run.principal,
            namespace=run.namespace,
            policies=self.policies,
            circuits=self.circuits,
            replicas=self.replicas,
            scope=scope_of(run, events, team),
        )

    async def _agent_execution(
        self,
        run: RunRecord,
        events: list[Event],
        prepared: PreparedSpec,
        created: RunCreated,
        replay: bool,
    ) -> AgentExecution:
        """An agent run's execution; ``NondeterminismError`` if its session's history
        is not the one it started from."""
        turns = await self.sessions.before(run.session_id, run.turn)
        if run.session_id is not None and not replay:
            for turn in turns:
                for model, replica in turn.replicas.items():  # the session stays where it went
                    self.replicas.remember(run.namespace, model, run.session_id, replica)
        everything = flatten(turns)
        digest = [len(everything), history_digest(everything)]
        started = [e for e in events if e.type == ev.RUN_STARTED]
        if started and started[0].data.get("history") != digest:
            raise NondeterminismError(
                f"run {run.id}: the session history differs from when the run started"
            )
        hooks = prepared.hooks if self.hooks.empty else prepared.hooks.merged(self.hooks)
        ctx = RunContext(
            run_id=run.id,
            namespace=run.namespace,
            session_id=run.session_id,
            spec=prepared.spec,
            input=created.input,
            journal=self._journal(run, events, replay),
            client_for=prepared.clients.__getitem__,
            tools=prepared.tools,
            hooks=hooks,
            scratch=self.scratch,
            live=None if replay else self.live,
        )
        return AgentExecution(run, ctx, turns, digest, bool(started), legacy_summary_event(events))

    def _team_execution(
        self, run: RunRecord, events: list[Event], plan: TeamRunSpec, input: str, replay: bool
    ) -> TeamExecution:
        """A team run's execution: its nodes' child runs, or on replay their recorded ends."""
        if self.children is None:
            raise UsageError(f"Team {plan.team.name}: team runs need a Runtime to run their nodes")
        journal = self._journal(run, events, replay, plan.team.spec.budgets)
        if replay:
            return TeamExecution(
                run, plan, input, events, journal, self.store, _no_child,
                replay=TeamReplay.of(events, self._check_child),
            )  # fmt: skip
        budgets = plan.team.spec.budgets
        context = TeamContext(
            run.id, run.namespace, journal, self.hooks, budgets, run.usage, self.scratch,
            run.session_id, live=self.live, team=run.agent,
        )  # fmt: skip
        steps = TeamSteps(
            context, plan.models, plan.tools, self.client,
            lambda name, spec: self.tool(name, spec, namespace=run.namespace),
        )  # fmt: skip
        return TeamExecution(
            run, plan, input, events, journal, self.store, self.children.run, steps
        )

    async def _check_child(self, child_id: str, node: dict[str, Any]) -> None:
        """Replay a team node's child run; it must end as the node recorded."""
        result = await self.execute(child_id, replay=True)
        expected = node.get("child_status", node.get("status"))
        if result.status != expected or (
            result.status == "succeeded" and result.output != node.get("output")
        ):
            raise NondeterminismError(
                f"replay of child run {child_id} (node {node.get('node')!r}) ended "
                f"{result.status} with {result.output!r}; the log recorded {expected} "
                f"with {node.get('output')!r}"
            )

    async def _drive(self, x: Execution, events: list[Event], replay: bool) -> RunResult:
        if replay:
            return await self._drive_replay(x, events)
        ctx = x.run_context
        if ctx is not None:
            self._running[x.run.id] = ctx  # its sandboxed calls can be paused from outside
        self._journals[x.run.id] = x.journal
        try:
            return await self._drive_live(x, started_at(events))
        finally:
            self._running.pop(x.run.id, None)
            self._paused.pop(x.run.id, None)
            self._journals.pop(x.run.id, None)

    def in_tool_call(self, run_id: str) -> bool:
        """Whether the run executing here is between a tool call's intent and its result."""
        journal = self._journals.get(run_id)
        return journal is not None and journal.in_tool_call

    async def _drive_live(self, x: Execution, since: float) -> RunResult:
        """Execute to an end or a wait, and record it."""
        run_id, journal = x.run.id, x.journal
        by = self.started_by.pop(run_id, None)
        await journal.append(
            ev.RUN_STARTED,
            {"owner": self.owner, **x.started_data(), **({"by": by} if by else {})},
            update=RunUpdate(status="running"),
            durable=False,  # written with the first event that must be durable
        )
        deadline = x.deadline_s
        loop = asyncio.get_running_loop()
        when = None if deadline is None else loop.time() + (since + deadline - self.clock())
        try:
            async with asyncio.timeout_at(when):
                ending = await x.body()
        except BaseException as exc:
            requested = run_id in self.cancel_requested
            if isinstance(exc, asyncio.CancelledError) and not requested:
                # The runtime is shutting down: keep what was done, leave the rest
                # to be resumed.
                with contextlib.suppress(Exception):
                    await journal.flush()
                raise
            ending = live_ending(
                exc, run_id=run_id, deadline_s=deadline, cancel_requested=requested
            )
        if ending.waiting is not None:
            if await self._record_waiting(journal, ending.status, ending.waiting):
                return await x.result(ending, replay=False)
            ending = Ending.cancelled()
        if ending.status != "succeeded" and self.children is not None:
            await self.children.stop(run_id)  # child runs still in flight
        extra = x.end_data() if ending.status == "succeeded" else _kept(x.end_data())
        ending = await self._record_end(journal, run_id, _with(ending, extra))
        result = await x.result(ending, replay=False)
        await x.finished(result)
        return result

    async def _drive_replay(self, x: Execution, events: list[Event]) -> RunResult:
        """Execute again from the log alone; it must arrive where the log ended."""
        finished = next((e for e in reversed(events) if e.type == ev.RUN_FINISHED), None)
        if finished is None:
            raise UsageError(f"run {x.run.id} has not finished; resume it instead of replaying")
        recorded = finished.data
        stopped = recorded["status"] in x.stopped_from_outside
        status: RunStatus
        output: str | None = None
        try:
            ending = await x.body()
        except Exception as exc:
            status = replayed_status(exc, recorded, stopped=stopped)
        else:
            status, output = "succeeded", ending.output
            if not stopped:
                x.check_replayed(ending, recorded)
        if stopped:
            status, output = recorded["status"], recorded.get("output")
        if status != recorded["status"] or output != recorded.get("output"):
            raise NondeterminismError(
                f"replay of {x.run.id} ended {status!r} with output {output!r}; "
                f"the log recorded {recorded['status']!r} with {recorded.get('output')!r}"
            )
        return await x.result(Ending(status, output, recorded.get("reason")), replay=True)

    # --- recording ends ---------------------------------------------------------

    async def _record_waiting(
        self, journal: Journal, status: RunStatus, data: dict[str, Any]
    ) -> bool:
        """Record that the run waits; ``False`` when a cancel was requested meanwhile."""
        try:
            await journal.append(
                ev.RUN_WAITING, data, update=RunUpdate(status=status, reason=data["reason"])
            )
        except CancelRequested:
            return False
        return True

    async def _record_end(self, journal: Journal, run_id: str, ending: Ending) -> Ending:
        """Record the run's end; returns the end recorded.

        The store refuses any end but ``cancelled`` once a cancel was requested, so an
        acknowledged cancel wins over the end the run arrived at meanwhile.
        """
        if ending.status == "cancelled":
            ending = ending.asked_by(await self.store.get_run(run_id))
        try:
            update = RunUpdate(status=ending.status, reason=ending.reason)
            audit = stopped(ending.status, ending.reason, ending.error, journal.principal)
            await journal.append(ev.RUN_FINISHED, ending.end_data(), update=update, audit=audit)
            return ending
        except CancelRequested:
            if ending.status == "cancelled":
                raise
        if self.children is not None:
            await self.children.stop(run_id)
        cancelled = Ending.cancelled(await self.store.get_run(run_id))
        update = RunUpdate(status="cancelled", reason=CANCELLED)
        await journal.append(ev.RUN_FINISHED, cancelled.end_data(), update=update)
        return cancelled

    async def _end_unstartable(
        self, run: RunRecord, events: list[Event], error: RunError
    ) -> RunResult:
        """End a run that cannot execute here as ``failed`` with the reason.

        Left ``running``, it would be picked up again by every worker poll and fail
        the same way each time.
        """
        journal = self._journal(run, events, replay=False)
        ending = Ending("failed", reason=error.message, error=error.to_dict())
        ending = await self._record_end(journal, run.id, ending)
        return RunResult(run.id, ending.status, None, ending.reason, run.usage)

    async def finish_cancelled(self, run: RunRecord) -> RunResult:
        """End a run that no worker is executing as cancelled (caller holds the lease)."""
        await self.store.append_events(
            run.id,
            [EventDraft(ev.RUN_FINISHED, Ending.cancelled(run).end_data(), self.clock())],
            expected_seq=run.last_seq,
            owner=self.owner,
            update=RunUpdate(status="cancelled", reason=CANCELLED),
        )
        return RunResult(run.id, "cancelled", None, CANCELLED, run.usage)

    # --- sandboxed calls of a running run ---------------------------------------

    async def control_tools(self, run_id: str, action: str) -> int:
        """``pause``, ``resume`` or ``terminate`` the sandboxed tool calls ``run_id`` is
        waiting on; returns how many. Paused time does not count against their timeouts."""
        ctx = self._running.get(run_id)
        if ctx is None:
            raise UsageError(f"run {run_id} is not running in this runtime")
        now = asyncio.get_running_loop().time()
        if action == "pause" and run_id not in self._paused:
            # Suspend the timeouts: they get back exactly what was left on resume.
            left = {}
            for deadline in ctx.tool_timeouts:
                when = deadline.when()
                if when is not None:
                    left[deadline] = when - now
                    deadline.reschedule(None)
            self._paused[run_id] = left
        elif action == "resume" and run_id in self._paused:
            for deadline, remaining in self._paused.pop(run_id).items():
                if deadline in ctx.tool_timeouts:
                    deadline.reschedule(now + remaining)
        count = 0
        for toolset in ctx.tools.values():
            method = getattr(toolset, f"{action}_run", None)
            if method is not None:
                count += await method(run_id)
        return count


def _with(ending: Ending, extra: dict[str, Any]) -> Ending:
    return Ending(ending.status, ending.output, ending.reason, ending.error, None, extra)


def _kept(extra: dict[str, Any]) -> dict[str, Any]:
    """What an end other than success keeps of the extra data: the children counted."""
    return {k: v for k, v in extra.items() if k == "child_runs"}


async def _no_child(request: ChildRequest) -> ChildOutcome:
    raise NondeterminismError(f"replay tried to start a child run ({request.agent})")


def _start_error(exc: Exception) -> StartError:
    """Why a run could not start, as recorded in its end."""
    detail = str(exc) if isinstance(exc, AgentrtError) else f"{type(exc).__name__}: {exc}"
    return StartError(f"the run could not start: {detail}")


def _start_failure(events: list[Event]) -> RunError | None:
    """The recorded error of a run that ended before it could start, else ``None``."""
    last = events[-1]
    error = last.data.get("error") if last.type == ev.RUN_FINISHED else None
    if isinstance(error, dict) and error.get("code") == StartError.code:
        return error_from_dict(error)
    return None
