"""Execute one run from its log: first start, resume and replay are the same code.

The executor reads the run's events, rebuilds its context, and runs the loop
through a journal. Every way a run can end becomes a recorded ``run.finished``
event with a status and a reason.
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
from agentrt.engine.children import ChildRunService
from agentrt.engine.history import conversation_of, history_digest
from agentrt.engine.hooks import HookSet
from agentrt.engine.journal import ApprovalPending, EventObserver, Journal, LogEnds, StepUnknown
from agentrt.engine.loop import RunContext, run_loop
from agentrt.engine.memory import Turn, flatten
from agentrt.engine.plans import RunCreated, RunSpec
from agentrt.engine.result import RunResult
from agentrt.engine.scratch import ScratchSpace
from agentrt.engine.shared import SharedByName
from agentrt.engine.summaries import legacy_summary_event, session_memory, summary_of
from agentrt.engine.team_run import TeamFailed, TeamReplay, TeamWaiting, run_team
from agentrt.engine.team_steps import TeamSteps
from agentrt.errors import (
    AgentrtError,
    BudgetExhausted,
    CancelRequested,
    NondeterminismError,
    NotFoundError,
    RunError,
    StartError,
    StepTimeout,
    StoreError,
    UsageError,
    error_from_dict,
)
from agentrt.models.base import ModelClient
from agentrt.models.factory import create_client
from agentrt.spec.resources import ModelSpec, Team, ToolSpec
from agentrt.spec.team import team_graph
from agentrt.state.base import (
    TERMINAL_STATUSES,
    Event,
    EventDraft,
    RunRecord,
    RunStatus,
    RunUpdate,
    Store,
    Usage,
)
from agentrt.state.memory import MemoryStore
from agentrt.tools.agent import AgentToolSet, ChildOutcome, ChildRequest
from agentrt.tools.base import ToolSet
from agentrt.tools.factory import ToolFactory
from agentrt.tools.memory import MemoryToolSet

__all__ = ["Executor"]

_CANCELLED = "cancelled on request"
# How a team run ends with nodes that never ran: from outside, or before a step of its own
# (which of its parallel nodes had ended then is not in the log).
_STOPPED = ("cancelled", "timed_out", "budget_exhausted")
_HISTORY_CACHE_SIZE = 2048
_PREPARED_CACHE_SIZE = 256


@dataclass(frozen=True)
class PreparedSpec:
    """A run spec made ready to execute: parsed once, reused by every run of it."""

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
    environ: dict[str, str] | None = None
    http: aiohttp.ClientSession | None = None
    cancel_requested: set[str] = field(default_factory=set)
    children: ChildRunService | None = None  # runs, stops and is woken by child runs
    scratch: ScratchSpace | None = None
    tool_factory: ToolFactory = field(default_factory=ToolFactory)  # closed with us
    _running: dict[str, RunContext] = field(default_factory=dict)
    _paused: dict[str, dict[asyncio.Timeout, float]] = field(default_factory=dict)
    _clients: SharedByName[ModelClient] = field(
        default_factory=lambda: SharedByName(lambda client: client.close())
    )
    _tools: SharedByName[ToolSet] = field(
        default_factory=lambda: SharedByName(lambda toolset: toolset.close())
    )
    _turns: OrderedDict[str, Turn] = field(default_factory=OrderedDict)
    _prepared: OrderedDict[bytes, PreparedSpec] = field(default_factory=OrderedDict)

    async def close(self) -> None:
        """Close model clients and tool sets (stopping the processes tools started)."""
        self._prepared.clear()
        await self._clients.close()
        await self._tools.close()
        await self.tool_factory.close()

    # --- building blocks --------------------------------------------------------

    def client(self, name: str, spec: ModelSpec) -> ModelClient:
        """A model client for a spec, reused across runs with the same spec."""
        key = _json.dumps([name, spec.model_dump(mode="json")])
        client, replaced = self._clients.get(
            name,
            key,
            lambda: create_client(spec, name=name, session=self.http, environ=self.environ),
        )
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

    async def turn_of(self, run_id: str) -> Turn:
        """A finished run as a session turn (cached: finished runs never change)."""
        cached = self._turns.get(run_id)
        if cached is not None:
            self._turns.move_to_end(run_id)
            return cached
        events = await self.store.read_events(run_id)
        turn = Turn(run_id, conversation_of(events), summary_of(events))
        self._turns[run_id] = turn
        if len(self._turns) > _HISTORY_CACHE_SIZE:
            self._turns.popitem(last=False)
        return turn

    async def session_turns(self, session_id: str | None, before_turn: int | None) -> list[Turn]:
        """A session's succeeded runs before ``before_turn`` (a fork's parent turns first)."""
        if session_id is None:
            return []
        turns = await self._parent_turns(session_id)
        if not before_turn:
            return turns
        runs = await self.store.list_runs(
            session_id=session_id, statuses=["succeeded"], limit=before_turn
        )
        for run in runs:
            if run.turn is not None and run.turn < before_turn:
                turns.append(await self.turn_of(run.id))
        return turns

    async def _parent_turns(self, session_id: str) -> list[Turn]:
        session = await self.store.get_session(session_id)
        if session is None or session.parent_session is None:
            return []
        return await self.session_turns(session.parent_session, session.parent_turn)

    # --- execution --------------------------------------------------------------

    def prepare(self, created: RunCreated) -> PreparedSpec:
        """The plan of an agent run with its tools, hooks and clients, shared by runs of
        one plan."""
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
        else:
            result = await self._execute_loaded(run, events, replay, created)
        ended = result.status in TERMINAL_STATUSES
        if ended and not replay and run.parent_run is not None and self.children is not None:
            await self.children.ended(run.parent_run, run_id)
        return result

    async def _execute_loaded(
        self, run: RunRecord, events: list[Event], replay: bool, plan: RunCreated | None
    ) -> RunResult:
        run_id, created = run.id, events[0]
        if replay and (failed := _start_failure(events)) is not None:
            return RunResult(run_id, "failed", None, failed.message, run.usage)
        if "team" in created.data:
            if replay:
                return await self._replay_team(run, events)
            return await self._execute_team(run, events)
        try:
            prepared = self.prepare(plan or RunCreated.from_data(created.data))
        except Exception as exc:  # a tool or hook that does not import, a missing API key
            if replay:
                raise
            return await self._end_unstartable(run, events, _start_error(exc))
        spec = prepared.spec
        turns = await self.session_turns(run.session_id, run.turn)
        recorded = legacy_summary_event(events)
        everything = flatten(turns)
        digest = [len(everything), history_digest(everything)]
        started = [e for e in events if e.type == ev.RUN_STARTED]
        if started and started[0].data.get("history") != digest:
            changed = NondeterminismError(
                f"run {run_id}: the session history differs from when the run started"
            )
            if replay:
                raise changed
            return await self._end_unstartable(run, events, changed)
        journal = Journal(
            self.store,
            run_id,
            events,
            owner=None if replay else self.owner,
            clock=self.clock,
            replay=replay,
            trusted_until=run.fork_step or 0,
            observers=() if replay else self.observers,
        )
        ctx = RunContext(
            run_id=run_id,
            namespace=run.namespace,
            session_id=run.session_id,
            spec=spec,
            input=created.data["input"],
            journal=journal,
            client_for=prepared.clients.__getitem__,
            tools=prepared.tools,
            hooks=prepared.hooks.merged(self.hooks) if self.hooks.hooks else prepared.hooks,
            scratch=self.scratch,
        )
        # Held while the run executes: a tool set retired meanwhile is closed after.
        self._tools.acquire(prepared.tools.values())
        self._clients.acquire(prepared.clients.values())
        try:
            if replay:
                return await self._replay(ctx, events, turns, recorded)
            self._running[run_id] = ctx
            try:
                return await self._execute_live(ctx, run, created, started, digest, turns, recorded)
            finally:
                self._running.pop(run_id, None)
                self._paused.pop(run_id, None)
        finally:
            await self._tools.release(prepared.tools.values())
            await self._clients.release(prepared.clients.values())

    async def _end_unstartable(
        self, run: RunRecord, events: list[Event], error: RunError
    ) -> RunResult:
        """End a run that cannot execute here as ``failed`` with the reason.

        Left ``running``, it would be picked up again by every worker poll and fail
        the same way each time.
        """
        journal = Journal(
            self.store, run.id, events, owner=self.owner, clock=self.clock,
            observers=self.observers,
        )  # fmt: skip
        data: dict[str, Any] = {"status": "failed", "output": None, "reason": error.message}
        data["error"] = error.to_dict()
        data = await self._record_end(journal, run.id, data)
        return RunResult(run.id, data["status"], None, data["reason"], run.usage)

    async def _execute_team(self, run: RunRecord, events: list[Event]) -> RunResult:
        """Run (or resume) a team run: its graph, each node a child run."""
        created = events[0]
        try:
            team = Team.model_validate(created.data["team"])
            if self.children is None:
                raise UsageError(f"Team {team.name}: team runs need a Runtime to run their nodes")
        except Exception as exc:
            return await self._end_unstartable(run, events, _start_error(exc))
        journal = Journal(
            self.store, run.id, events, owner=self.owner, clock=self.clock,
            observers=self.observers,
        )  # fmt: skip
        resumed = any(e.type == ev.RUN_STARTED for e in events)
        await journal.append(
            ev.RUN_STARTED,
            {"owner": self.owner, "resumed": resumed, "team": team.name},
            update=RunUpdate(status="running"),
            durable=False,
        )
        steps = TeamSteps.of(
            run, created.data, journal, team.spec.budgets, hooks=self.hooks, client=self.client,
            tool=lambda name, spec: self.tool(name, spec, namespace=run.namespace),
            scratch=self.scratch,
        )  # fmt: skip
        deadline = team.spec.budgets.deadline_s
        loop = asyncio.get_running_loop()
        when = None if deadline is None else loop.time() + (created.ts + deadline - self.clock())
        status: RunStatus
        output: str | None = None
        waiting: dict[str, Any] | None = None
        try:
            async with asyncio.timeout_at(when):
                outcome = await run_team(
                    team_graph(team), run_id=run.id, namespace=run.namespace,
                    input=created.data["input"], events=events, journal=journal,
                    run_child=self.children.run, choose=steps.choose, run_tool=steps.run_tool,
                )  # fmt: skip
            status, output, reason = "succeeded", outcome.output, None
        except TeamWaiting as exc:
            status, reason = "waiting", exc.reason
            waiting = {"reason": exc.reason, "waits_on": exc.children}
        except TeamFailed as exc:
            status, reason = "failed", exc.reason
        except BudgetExhausted as exc:  # before one of the team's own steps
            status, reason = "budget_exhausted", exc.message
        except TimeoutError:
            status, reason = "timed_out", f"budgets.deadline_s={deadline} exceeded"
        except CancelRequested:
            status, reason = "cancelled", _CANCELLED
        except asyncio.CancelledError:
            if run.id not in self.cancel_requested:
                with contextlib.suppress(Exception):
                    await journal.flush()
                raise
            status, reason = "cancelled", _CANCELLED
        except StoreError:
            raise  # the store cannot record an end now: the run stays resumable
        except Exception as exc:  # a bug: record it, don't lose it
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
        if waiting is not None:
            if await self._record_waiting(journal, "waiting", waiting):
                return RunResult(run.id, "waiting", None, reason, Usage())
            status, reason = "cancelled", _CANCELLED
        if status != "succeeded" and self.children is not None:
            # Nodes still running when the team failed, timed out or was cancelled.
            await self.children.stop(run.id)
        data: dict[str, Any] = {"status": status, "output": output, "reason": reason}
        if status == "succeeded":
            data["state"] = outcome.state  # what replay must arrive at again
        data = await self._record_end(journal, run.id, data)
        status, output, reason = data["status"], data["output"], data["reason"]
        finished = await self.store.get_run(run.id)  # its usage: every node's, added up
        return RunResult(run.id, status, output, reason, finished.usage if finished else Usage())

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

    async def _record_end(
        self, journal: Journal, run_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        """Record the run's end (``data``: status, output, reason); returns what was recorded.

        The store refuses any end but ``cancelled`` once a cancel was requested, so an
        acknowledged cancel wins over the end the run arrived at meanwhile.
        """
        try:
            update = RunUpdate(status=data["status"], reason=data["reason"])
            await journal.append(ev.RUN_FINISHED, data, update=update)
            return data
        except CancelRequested:
            if data["status"] == "cancelled":
                raise
        if self.children is not None:
            await self.children.stop(run_id)
        data = {"status": "cancelled", "output": None, "reason": _CANCELLED}
        update = RunUpdate(status="cancelled", reason=_CANCELLED)
        await journal.append(ev.RUN_FINISHED, data, update=update)
        return data

    async def _replay_team(self, run: RunRecord, events: list[Event]) -> RunResult:
        """Walk a finished team run's graph again from its log, replaying every child run.

        Every node's end, every decision and the final shared state must come out
        as recorded, else :class:`NondeterminismError`.
        """
        finished = next((e for e in reversed(events) if e.type == ev.RUN_FINISHED), None)
        if finished is None:
            raise UsageError(f"run {run.id} has not finished; resume it instead of replaying")
        team = Team.model_validate(events[0].data["team"])
        recorded = finished.data

        async def check_child(child_id: str, node: dict[str, Any]) -> None:
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

        journal = Journal(self.store, run.id, events, owner=None, clock=self.clock, replay=True)
        status: str = "succeeded"
        output: str | None = None
        try:
            outcome = await run_team(
                team_graph(team), run_id=run.id, namespace=run.namespace,
                input=events[0].data["input"], events=events, journal=journal,
                run_child=self._no_child, replay=TeamReplay.of(events, check_child),
            )  # fmt: skip
            output = outcome.output
            if "state" in recorded and outcome.state != recorded["state"]:
                raise NondeterminismError(
                    f"replay of team run {run.id} merged its shared state to "
                    f"{outcome.state!r}; the log recorded {recorded['state']!r}"
                )
        except TeamFailed:
            status = "failed"
        except NondeterminismError:
            if recorded["status"] not in _STOPPED:
                raise
            status = recorded["status"]  # stopped before its nodes all ended
        if recorded["status"] in _STOPPED:
            status, output = recorded["status"], recorded.get("output")
        if status != recorded["status"] or output != recorded.get("output"):
            raise NondeterminismError(
                f"replay of team run {run.id} ended {status!r} with {output!r}; the log "
                f"recorded {recorded['status']!r} with {recorded.get('output')!r}"
            )
        return RunResult(run.id, recorded["status"], output, recorded.get("reason"), run.usage)

    @staticmethod
    async def _no_child(request: ChildRequest) -> ChildOutcome:
        raise NondeterminismError(f"replay tried to start a child run ({request.agent})")

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

    async def _execute_live(
        self,
        ctx: RunContext,
        run: RunRecord,
        created: Event,
        started: list[Event],
        digest: list[Any],
        turns: list[Turn],
        recorded: Event | None,
    ) -> RunResult:
        run_id, spec, journal = ctx.run_id, ctx.spec, ctx.journal
        await journal.append(
            ev.RUN_STARTED,
            {"owner": self.owner, "resumed": bool(started), "history": digest},
            update=RunUpdate(status="running"),
            durable=False,  # written with the first event that must be durable
        )
        deadline = spec.budgets.deadline_s
        loop = asyncio.get_running_loop()
        when = None if deadline is None else loop.time() + (created.ts + deadline - self.clock())
        status: RunStatus
        output: str | None = None
        error: dict[str, Any] | None = None
        waiting: dict[str, Any] | None = None
        try:
            async with asyncio.timeout_at(when):
                history = await session_memory(ctx, turns, recorded)
                outcome = await run_loop(ctx, history)
            status, output, reason = "succeeded", outcome.output, None
        except StepUnknown as unknown:
            reason = (
                f"step {unknown.step} ({unknown.tool}) may or may not have happened; decide with "
                f"`agentrt resolve {run_id} {unknown.step} --rerun | --output TEXT | --fail`"
            )
            status, waiting = "waiting", {"reason": reason}
        except ApprovalPending as pending:
            pairs = zip(pending.steps, pending.tools, strict=True)
            calls = ", ".join(f"step {s} ({t})" for s, t in pairs)
            reason = (
                f"{calls} {'needs' if len(pending.steps) == 1 else 'need'} approval; decide "
                f"with `agentrt approve {run_id} STEP` or "
                f"`agentrt deny {run_id} STEP --reason TEXT`"
            )
            status, waiting = "waiting_approval", {"reason": reason, "approval": pending.steps}
        except CancelRequested:
            status, reason = "cancelled", _CANCELLED
        except TimeoutError:
            status, reason = "timed_out", f"budgets.deadline_s={deadline} exceeded"
        except BudgetExhausted as exc:
            status, reason, error = "budget_exhausted", exc.message, exc.to_dict()
        except StepTimeout as exc:
            status, reason, error = "timed_out", exc.message, exc.to_dict()
        except RunError as exc:
            status, reason, error = "failed", exc.message, exc.to_dict()
        except asyncio.CancelledError:
            if run_id not in self.cancel_requested:
                # The runtime is shutting down: keep what was done, leave the rest
                # to be resumed.
                with contextlib.suppress(Exception):
                    await journal.flush()
                raise
            status, reason = "cancelled", _CANCELLED
        except StoreError:
            raise  # the store cannot record an end now: the run stays resumable
        except Exception as exc:  # a bug in a hook or tool plumbing: record it, don't lose it
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
        if waiting is not None:
            if await self._record_waiting(journal, status, waiting):
                return self._result(ctx, status, None, reason)
            status, reason = "cancelled", _CANCELLED
        if status in ("cancelled", "timed_out") and self.children is not None:
            await self.children.stop(run_id)  # agent tools' child runs still in flight
        data: dict[str, Any] = {"status": status, "output": output, "reason": reason}
        if ctx.children:
            data["child_runs"] = ctx.children  # what a parent waiting on this run counts
        if error is not None:
            data["error"] = error
        data = await self._record_end(journal, run_id, data)
        status, output, reason = data["status"], data["output"], data["reason"]
        result = self._result(ctx, status, output, reason)
        await ctx.hooks.run("on_finish", ctx, result)
        return result

    async def finish_cancelled(self, run: RunRecord) -> RunResult:
        """End a run that no worker is executing as cancelled (caller holds the lease)."""
        data = {"status": "cancelled", "output": None, "reason": _CANCELLED}
        await self.store.append_events(
            run.id,
            [EventDraft(ev.RUN_FINISHED, data, self.clock())],
            expected_seq=run.last_seq,
            owner=self.owner,
            update=RunUpdate(status="cancelled", reason=_CANCELLED),
        )
        return RunResult(run.id, "cancelled", None, _CANCELLED, run.usage)

    async def _replay(
        self, ctx: RunContext, events: list[Event], turns: list[Turn], recorded: Event | None
    ) -> RunResult:
        finished = next((e for e in reversed(events) if e.type == ev.RUN_FINISHED), None)
        if finished is None:
            raise UsageError(f"run {ctx.run_id} has not finished; resume it instead of replaying")
        recorded_status = finished.data["status"]
        if recorded_status == "cancelled" or recorded_status == "timed_out":
            # Cancellation and deadlines come from outside the log's steps: replay
            # re-executes the recorded steps and reports the recorded ending.
            with contextlib.suppress(RunError, StepUnknown, ApprovalPending):
                await run_loop(ctx, await session_memory(ctx, turns, recorded))
            return self._result(
                ctx, recorded_status, finished.data.get("output"), finished.data.get("reason")
            )
        try:
            history = await session_memory(ctx, turns, recorded)
            outcome = await run_loop(ctx, history)
            status, output = "succeeded", outcome.output
        except BudgetExhausted:
            status, output = "budget_exhausted", None
        except StepUnknown:
            status, output = "waiting", None
        except ApprovalPending:
            status, output = "waiting_approval", None
        except LogEnds:
            if recorded_status != "failed":
                raise
            status, output = "failed", None  # stopped inside this step, as recorded
        except RunError as exc:
            if isinstance(exc, NondeterminismError):
                raise
            status, output = ("timed_out" if isinstance(exc, StepTimeout) else "failed"), None
        except Exception as exc:  # a hook's own error, raised again from the same log
            if f"{type(exc).__name__}: {exc}" != finished.data.get("reason"):
                raise
            status, output = "failed", None
        if status != recorded_status or output != finished.data.get("output"):
            raise NondeterminismError(
                f"replay of {ctx.run_id} ended {status!r} with output {output!r}; "
                f"the log recorded {recorded_status!r} with {finished.data.get('output')!r}"
            )
        return self._result(ctx, recorded_status, output, finished.data.get("reason"))

    @staticmethod
    def _result(ctx: RunContext, status: str, output: str | None, reason: str | None) -> RunResult:
        return RunResult(ctx.run_id, status, output, reason, ctx.usage, ctx.step, ctx.children)  # type: ignore[arg-type]


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
