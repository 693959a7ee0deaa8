"""Durable steps: the one place where a run's model and tool I/O is recorded.

Every side effect goes through :meth:`Journal.model_step` or
:meth:`Journal.tool_step`. A step whose result is in the log is never performed
again: its recorded result is returned. A step that is new is recorded as an
intent, performed, and its result recorded. A tool step whose intent was
recorded but whose result was not (the process died during it) is reconciled by
the tool's policy instead of being silently run twice.

Performing a step again (an idempotent tool after a crash, or a person's
``rerun`` decision) records a new intent first, ``tool.call`` with its
``attempt``, durably and conditionally on the log not having moved: the attempt
is claimed once, a decision is consumed once, and a crash during the attempt
leaves the step ``unknown`` again instead of running it a third time.

The journal is also the run context's source of time and new ids
(:meth:`Journal.value`, see :mod:`agentrt.engine.context_values`): recorded once,
returned from the log on resume and replay.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

from agentrt.engine import audit_trail
from agentrt.engine import events as ev
from agentrt.engine.budget_scopes import NO_SCOPE, BudgetScope
from agentrt.engine.circuit_breakers import Circuits
from agentrt.engine.context_values import ContextValues, ValueKind
from agentrt.engine.event_buffer import EventBuffer, EventObserver
from agentrt.engine.replicas import Replicas
from agentrt.engine.step_records import StepRecord, add_event, index_steps, undecided_steps
from agentrt.engine.tenant_budgets import ONE_TOOL_CALL, BudgetBook, hold_tool_call, spent
from agentrt.engine.tool_policies import PolicyBook, Verdict
from agentrt.errors import BudgetExhausted, CancelRequested, NondeterminismError, error_from_dict
from agentrt.models.base import ModelResponse, ToolCall
from agentrt.state.base import AuditDraft, Event, RunUpdate, Store, Usage
from agentrt.state.budget_ledger import Amount
from agentrt.tools.base import ToolContext, ToolResult, ToolSet

__all__ = [
    "ApprovalPending",
    "EventObserver",
    "Journal",
    "LogEnds",
    "LogAwareObserver",
    "StepRecord",
    "StepUnknown",
    "index_steps",
    "undecided_steps",
]


@runtime_checkable
class LogAwareObserver(Protocol):
    """An event observer that is also shown what a run's log held when it was taken up.

    A run resumed, or continued after a decision, goes on from steps recorded by
    another process (or earlier): their intents, tokens and costs are in the log,
    not in the events this runtime records. Such an observer gets the whole log
    first, then every new event as usual.
    """

    def __call__(self, run_id: str, event: Event) -> None:
        """See an event just recorded."""
        ...

    def log_loaded(self, run_id: str, events: Sequence[Event]) -> None:
        """See the log of ``run_id`` as it was when this runtime took the run up."""
        ...


log = logging.getLogger(__name__)


class StepUnknown(Exception):
    """Signal: a tool step's outcome is unknown and a person must decide."""

    def __init__(self, step: int, tool: str) -> None:
        super().__init__(f"step {step} ({tool}) outcome unknown")
        self.step = step
        self.tool = tool


class ApprovalPending(Exception):
    """Signal: tool calls wait for a person to approve or deny them."""

    def __init__(self, steps: list[int], tools: list[str]) -> None:
        super().__init__(f"steps {steps} wait for approval")
        self.steps = steps
        self.tools = tools


class LogEnds(NondeterminismError):
    """Replay reached a step the run started but never finished: its log ends there.

    That is where a run stopped by an error outside the model's own failures (a
    hook's exception, say) ended; a replay of it arrives at its recorded end.
    """


class Journal:
    """A run's event log as seen by the engine while the run executes.

    Events are written in order, in as few transactions as safety allows: an
    event that must be durable before the run goes on (a tool call's intent, a
    non-idempotent tool's result, the run's end) is flushed together with every
    event buffered before it. Buffered events are those whose loss in a crash
    costs nothing but repeating work without external effect (a model call, an
    idempotent tool call). A recorded step is never performed again.

    In ``replay`` mode nothing is written and nothing is performed: every step
    must come from the log, else :class:`NondeterminismError`.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        events: Sequence[Event],
        *,
        owner: str | None,
        clock: Callable[[], float],
        replay: bool = False,
        trusted_until: int = 0,
        observers: Sequence[EventObserver] = (),
        handing_back: Container[str] = (),
        token: int | None = None,
        budgets: BudgetBook | None = None,
        principal: str | None = None,
        namespace: str = "default",
        policies: PolicyBook | None = None,
        circuits: Circuits | None = None,
        replicas: Replicas | None = None,
        scope: BudgetScope = NO_SCOPE,
    ) -> None:
        self.store = store
        self.scope = scope  # the scoped Budgets and the parents' accounts its steps draw on
        self.namespace = namespace  # the run's tenant: whose Budgets its steps draw on
        self.budgets = budgets  # the tenants' Budgets its model steps reserve against
        self.circuits = circuits  # the model endpoints' breakers its model steps ask
        self.replicas = replicas  # where its sessions' model steps go (replicated Models)
        self.policies = policies  # the tenants' Policies its tool steps are decided by
        # Who started the run (and their key's role, as its first event says): the
        # audit log's "who" of the calls it makes, and what Policies may select them by.
        self.principal = principal
        first = events[0] if events else None
        self.role = first.data.get("role") if first and first.type == ev.RUN_CREATED else None
        last_seq = events[-1].seq if events else 0
        self._buffer = EventBuffer(
            store, run_id, last_seq, owner=owner, token=token, observers=observers
        )
        # Runs whose worker gives them back: no new step starts (see append).
        self._handing_back = handing_back
        self.in_tool_call = False  # between a tool call's durable intent and its result
        self.run_id = run_id
        self.owner = owner
        self.replay = replay
        self.clock = clock
        self._steps = index_steps(events)
        self._top = _top_step(events)  # the highest step number recorded or claimed
        # Team steps found again by their node instance's key (routes, tool nodes).
        self._keyed = {
            str(rec.intent.data["key"]): step
            for step, rec in self._steps.items()
            if rec.intent is not None and "key" in rec.intent.data
        }
        self._values = ContextValues(events)
        self._unreserved = _unreserved(events)
        self.spent = Usage()  # what the events this journal recorded added to the run's usage
        self.ended = False  # the run's end is recorded: nothing more is
        # Steps copied from a parent run by a fork were produced from another
        # prompt; their request digests are not compared.
        self._trusted_until = trusted_until
        self._observers = tuple(observers)
        if not replay:
            self._show_log(events)

    def _show_log(self, events: Sequence[Event]) -> None:
        for observer in self._observers:
            if isinstance(observer, LogAwareObserver):
                try:
                    observer.log_loaded(self.run_id, events)
                except Exception:  # as for every event: a broken watcher must not fail the run
                    log.exception("event observer failed on the log of run %s", self.run_id)

    def _stopped_unreserved(self, step: int) -> None:
        """On replay, stop where the run stopped because ``step`` could not be reserved
        (a Budget's account was spent: nothing of the step was recorded)."""
        reason = self._unreserved.get(step)
        if reason is not None:
            raise BudgetExhausted(reason)

    @property
    def last_seq(self) -> int:
        """The seq of the run's last committed event."""
        return self._buffer.last_seq

    def recorded(self, step: int) -> StepRecord | None:
        """What the log holds for ``step``."""
        return self._steps.get(step)

    def new_step(self) -> int:
        """Claim a step number no step of the run has (a team's steps, which run in no
        fixed order, are numbered as they start and found again by their key)."""
        self._top += 1
        return self._top

    def keyed_step(self, key: str) -> int | None:
        """The latest step recorded with ``key`` (a team node instance's), if any."""
        return self._keyed.get(key)

    def value(self, kind: ValueKind, step: int, produce: Callable[[], Any]) -> Any:
        """A value of the run's context asked for at ``step``: the recorded one, else a new
        one from ``produce``, recorded (with the next flush).

        Raises:
            NondeterminismError: the log has another kind of value there, or a
                value that was changed; on replay, also when it has none.
        """
        n, recorded = self._values.next(kind, step)
        if recorded is not None:
            return recorded["value"]
        if self.replay:
            raise NondeterminismError(
                f"step {step}: replay asked for the run's {kind!r} value, "
                "which the log never recorded"
            )
        value = produce()
        if not self.ended:  # after its end a run records nothing, and nothing replays it
            self._enqueue(ev.CONTEXT_VALUE, self._values.record(kind, step, n, value), None, None)
        return value

    def calls_of(self, toolset: str) -> int:
        """Calls of Tool resource ``toolset`` recorded in this run (for per-run quotas)."""
        return sum(
            1
            for rec in self._steps.values()
            if rec.intent is not None
            and rec.intent.type == ev.TOOL_CALL
            and rec.intent.data.get("toolset") == toolset
        )

    async def append(
        self,
        type: str,
        data: dict[str, Any],
        *,
        step: int | None = None,
        update: RunUpdate | None = None,
        durable: bool = True,
        audit: AuditDraft | None = None,
    ) -> Event:
        """Record an event (and a change to the run row, and ``audit``, the record of
        the tenant's audit log it makes, in the same write).

        With ``durable`` the call returns once the event and all events before
        it are committed; otherwise it is committed with the next durable one.
        """
        if type in _STEP_STARTS and self.run_id in self._handing_back:
            # The worker gives the run back at this boundary: nothing of the step
            # was done, and whoever takes the run up starts it.
            raise asyncio.CancelledError(f"{self.run_id} handed back")
        event = self._enqueue(type, data, step, update, audit)
        if durable:
            try:
                await self.flush(event.seq)
            except CancelRequested:
                if type in _ANNOUNCEMENTS:
                    self._buffer.withdraw(
                        event
                    )  # refused: the step or ending it announced won't be
                raise
        return event

    def _enqueue(
        self,
        type: str,
        data: dict[str, Any],
        step: int | None,
        update: RunUpdate | None,
        audit: AuditDraft | None = None,
    ) -> Event:
        """Buffer an event for the next flush; index it."""
        if self.replay:
            raise NondeterminismError(f"replay tried to record {type!r} at step {step}")
        event = self._buffer.add(type, data, self.clock(), step, update, audit)
        if update is not None and update.usage is not None:
            self.spent = self.spent + update.usage
        if step is not None:
            add_event(self._steps.setdefault(step, StepRecord()), event)
            if "key" in data and type in (ev.MODEL_CALL, ev.TOOL_CALL):
                self._keyed[str(data["key"])] = step
        elif type == ev.RUN_FINISHED:
            self.ended = True
        return event

    async def flush(self, through: int | None = None) -> None:
        """Commit buffered events (up to ``through``, or all) in one transaction."""
        await self._buffer.flush(through)

    # --- model steps ----------------------------------------------------------

    async def model_step(
        self,
        step: int,
        *,
        model: str,
        digest: str,
        perform: Callable[[], Awaitable[tuple[ModelResponse, dict[str, Any], Usage]]],
        record: Mapping[str, Any] | None = None,
        settle: str | None = None,
    ) -> tuple[ModelResponse, dict[str, Any]]:
        """Return the recorded response of ``step`` or perform and record it.

        ``settle`` is the step's budget reservation: settled to the usage recorded,
        in the write that records it.

        ``perform`` returns the response, extra data to record with it (cost,
        the fallback model used) and the usage to add to the run. ``record`` is
        recorded with the intent: tools discovered at run time, renamed tools
        and notices (see :mod:`agentrt.engine.offer`), or what a step that is
        not the loop's own is (``kind``, ``key``). Returns the response and the
        whole recorded data.
        """
        rec = self._steps.get(step)
        if rec is not None and rec.intent is not None:
            if rec.intent.type != ev.MODEL_CALL:
                raise NondeterminismError(
                    f"step {step}: the log has {rec.intent.type!r}, the loop asked for a model call"
                )
            if step > self._trusted_until and rec.intent.data.get("digest") != digest:
                raise NondeterminismError(
                    f"step {step}: the model request differs from the recorded one "
                    "(instructions, tools, hooks or history changed since it was recorded)"
                )
            if rec.result is not None:
                return ModelResponse.from_dict(rec.result.data), rec.result.data
        if self.replay:
            if rec is not None and rec.errors:
                # The step failed after its retries and fallbacks: it fails again, as recorded.
                raise error_from_dict(rec.errors[-1].data.get("error") or {})
            if rec is not None and rec.intent is not None:
                raise LogEnds(f"step {step}: the run stopped during this model step")
            self._stopped_unreserved(step)
            raise NondeterminismError(f"step {step}: no recorded model result to replay")
        # A model call has no external effect: its intent and result are buffered
        # (a crash before they are flushed means the call is simply made again).
        if rec is None or rec.intent is None:
            # What was offered, for replay and resume: see agentrt.engine.offer.
            data: dict[str, Any] = {"model": model, "digest": digest, **(record or {})}
            await self.append(ev.MODEL_CALL, data, step=step, durable=False)
        response, extra, usage = await perform()
        data = {**response.to_dict(), **extra}
        settles = () if settle is None else ((settle, spent(usage)),)
        update = RunUpdate(usage=usage, settles=settles)
        await self.append(ev.MODEL_RESULT, data, step=step, update=update, durable=False)
        return response, data

    # --- tool steps -----------------------------------------------------------

    async def tool_step(
        self,
        step: int,
        call: ToolCall,
        tool: ToolSet | None,
        ctx: ToolContext,
        perform: Callable[[], Awaitable[tuple[ToolResult, float]]],
        refused: str | None = None,
        verdict: Verdict | None = None,
    ) -> ToolResult:
        """Return the recorded result of a tool step, reconcile it, or perform it.

        ``refused`` (a quota's or a Policy's message) records the call as failed without
        performing it. ``verdict`` (the tenant's Policies') is recorded with a new call:
        one it does not allow was refused by it.
        """
        rec = self._steps.get(step)
        if rec is not None and rec.intent is not None:
            if rec.intent.type != ev.TOOL_CALL or rec.intent.data.get("name") != call.name:
                raise NondeterminismError(
                    f"step {step}: the log has {rec.intent.type} "
                    f"{rec.intent.data.get('name')!r}, the loop asked for tool {call.name!r}"
                )
            if rec.result is not None:
                return ToolResult.from_dict(rec.result.data)
        if self.replay:
            if rec is not None and rec.intent is not None:
                raise LogEnds(f"step {step}: the run stopped during this tool step")
            self._stopped_unreserved(step)
            raise NondeterminismError(f"step {step}: no recorded tool result to replay")
        data: dict[str, Any] = {"id": call.id, "name": call.name, "args": call.arguments}
        if tool is not None:
            data["toolset"] = tool.name  # the Tool resource: quotas count by it
        if ctx.key is not None:
            data["key"] = str(ctx.key)  # a team node's: the same on every attempt
        if verdict is not None:
            data["policy"] = verdict.record()  # what decided it, for every reader of the log
        if rec is not None and rec.approval is not None and not rec.approval.data.get("approved"):
            # Denied: recorded as a call that failed, and never performed.
            if rec.intent is None:
                await self.append(ev.TOOL_CALL, data, step=step, durable=False)
            by = rec.approval.data.get("by")
            reason = rec.approval.data.get("reason") or "no reason given"
            denied = ToolResult(f"denied{' by ' + by if by else ''}: {reason}", is_error=True)
            return await self._record_tool_result(step, denied, 0.0, reconciled="denied")
        if refused is not None and (rec is None or rec.intent is None):
            # The Policies refused it unless they allowed it, or a person approved it as
            # they asked (then a quota refused it).
            asked = rec is not None and rec.approval is not None
            by_policy = verdict is not None and verdict.effect != "allow" and not asked
            refusal = audit_trail.tool_refused(
                step, data, refused, self.principal, policy=by_policy
            )
            # Without "toolset": a refused call does not count against the quota.
            data.pop("toolset", None)
            await self.append(ev.TOOL_CALL, data, step=step, durable=False, audit=refusal)
            result = ToolResult(refused, is_error=True)
            how = "policy" if by_policy else "quota"
            return await self._record_tool_result(step, result, 0.0, reconciled=how)
        # From its intent to its result, a call is let finish by a worker giving the
        # run back: stopped halfway, it would be left unknown.
        self.in_tool_call = True
        try:
            if rec is None or rec.intent is None:
                # The intent is durable before the tool can have any effect.
                await self._call_intent(step, data)
                return await self._perform_tool(step, tool, perform)
            return await self._reconcile(step, rec, call, tool, ctx, perform)
        finally:
            self.in_tool_call = False

    async def _reconcile(
        self,
        step: int,
        rec: StepRecord,
        call: ToolCall,
        tool: ToolSet | None,
        ctx: ToolContext,
        perform: Callable[[], Awaitable[tuple[ToolResult, float]]],
    ) -> ToolResult:
        """A tool call started before a crash and has no result: decide, never guess."""
        decision = rec.open_decision()
        if decision is not None:
            action = decision.data.get("action")
            if action == "rerun":
                return await self._perform_again(step, rec, tool, perform, decision="rerun")
            result = ToolResult(str(decision.data.get("output", "")), is_error=action == "fail")
            return await self._record_tool_result(step, result, 0.0, reconciled="decision")
        policy = "rerun" if tool is None else tool.spec.unknown_policy()
        if policy == "rerun":
            return await self._perform_again(step, rec, tool, perform)
        if policy == "lookup" and tool is not None:
            found = await tool.lookup(call.name, ctx)
            if found is not None:
                return await self._record_tool_result(step, found, 0.0, reconciled="lookup")
        if rec.open_unknown() is None:
            what = "its re-run" if rec.attempts > 1 else "it"
            reason = (
                f"tool {call.name!r} started before the process stopped and the result of "
                f"{what} was not recorded; it is not idempotent, so it was not run again"
            )
            await self.append(ev.TOOL_UNKNOWN, {"reason": reason}, step=step)
        raise StepUnknown(step, call.name)

    async def _perform_again(
        self,
        step: int,
        rec: StepRecord,
        tool: ToolSet | None,
        perform: Callable[[], Awaitable[tuple[ToolResult, float]]],
        *,
        decision: str | None = None,
    ) -> ToolResult:
        """Claim a new attempt of a started step with its own durable intent, then perform it.

        The intent is a conditional append (the log must not have moved since this
        execution read it, and the lease must be this owner's), so two executions
        never both claim an attempt, and a decision is consumed by one attempt.
        """
        assert rec.intent is not None
        data = {**rec.intent.data, "attempt": rec.attempts + 1}
        if decision is not None:
            data["decision"] = decision
        await self._call_intent(step, data)
        return await self._perform_tool(step, tool, perform)

    async def _call_intent(self, step: int, data: dict[str, Any]) -> None:
        """Record that a call is about to be made, durably, with its audit record; a
        tenant's Budget of tool calls is drawn on first, and settled in that write."""
        settles: tuple[tuple[str, Amount], ...] = ()
        if self.budgets is not None:
            held = await hold_tool_call(
                self.store, self.budgets, namespace=self.namespace, run_id=self.run_id,
                step=step, attempt=int(data.get("attempt", 1)), now=self.clock(),
                scope=self.scope,
            )  # fmt: skip
            settles = () if held is None else ((held, ONE_TOOL_CALL),)
        audit = audit_trail.tool_called(step, data, self.principal)
        update = RunUpdate(usage=_ONE_TOOL, settles=settles)
        await self.append(ev.TOOL_CALL, data, step=step, update=update, audit=audit)

    async def _perform_tool(
        self,
        step: int,
        tool: ToolSet | None,
        perform: Callable[[], Awaitable[tuple[ToolResult, float]]],
    ) -> ToolResult:
        result, seconds = await perform()
        # Running an idempotent tool again is harmless, so its result may wait for
        # the next flush; any other tool's effect is recorded before going on.
        durable = tool is None or not tool.spec.idempotent
        return await self._record_tool_result(step, result, seconds, durable=durable)

    async def _record_tool_result(
        self,
        step: int,
        result: ToolResult,
        seconds: float,
        *,
        reconciled: str | None = None,
        durable: bool = True,
    ) -> ToolResult:
        data = result.to_dict()
        data["ms"] = round(seconds * 1000, 3)
        if reconciled:
            data["reconciled"] = reconciled
        used = result.trace.get("usage") if result.trace else None
        update = None
        if used:  # a child run's consumption counts against this run
            update = RunUpdate(
                usage=Usage(int(used[0]), int(used[1]), float(used[2]), int(used[3]), int(used[4]))
            )
        await self.append(ev.TOOL_RESULT, data, step=step, update=update, durable=durable)
        return result


_ONE_TOOL = Usage(tool_calls=1)
# The first event of a step: where a run being given back stops.
_STEP_STARTS = frozenset({ev.MODEL_CALL, ev.TOOL_CALL, ev.NODE_STARTED})
# Events that announce what is about to happen (a step's attempt, the run's waiting or
# end), as opposed to recording what happened: when the store refuses one because the
# run is being cancelled, it is dropped instead of written with the cancelled end.
_ANNOUNCEMENTS = frozenset({ev.TOOL_CALL, ev.RUN_WAITING, ev.RUN_FINISHED, ev.NODE_STARTED})


def _top_step(events: Sequence[Event]) -> int:
    """The highest step number in ``events``, also those claimed by a team node's start."""
    top = 0
    for event in events:
        if event.step is not None:
            top = max(top, event.step)
        elif event.type == ev.NODE_STARTED and isinstance(event.data.get("step"), int):
            top = max(top, event.data["step"])
    return top


_UNRESERVED: Final = re.compile(r"step (\d+) cannot be reserved: ")


def _unreserved(events: Sequence[Event]) -> dict[int, str]:
    """The steps the run stopped ``budget_exhausted`` at before recording anything of
    them (their reservation refused), with the reason its end recorded."""
    found: dict[int, str] = {}
    for event in events:
        if event.type == ev.RUN_FINISHED and event.data.get("status") == "budget_exhausted":
            reason = str(event.data.get("reason") or "")
            if (m := _UNRESERVED.match(reason)) is not None:
                found[int(m.group(1))] = reason
    return found
