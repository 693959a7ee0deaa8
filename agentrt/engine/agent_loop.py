"""The reasoning loop: plan (model call), act (tool calls), observe, reflect, evaluate.

The loop is deterministic given the recorded results of its steps: that is what
lets the journal resume and replay it. It reads no clock and no randomness of
its own: the context's ``now()`` and ``new_id()`` are recorded in the log and
replayed (see :mod:`agentrt.engine.context_values`). Every model and tool call goes
through the gateway (:mod:`agentrt.engine.gateway`) and so through the journal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agentrt import _json
from agentrt._text import count
from agentrt.engine import events as ev
from agentrt.engine.budget_scopes import run_account
from agentrt.engine.conversation import continuation
from agentrt.engine.gateway import (
    ContextValues,
    ModelChain,
    ToolPolicy,
    check_budgets,
    check_tool_calls,
    model_step,
    policy_verdicts,
    quota_refusals,
    request_digest,
    retry_delay,
    tool_step,
)
from agentrt.engine.hooks import HookSet
from agentrt.engine.journal import ApprovalPending, Journal
from agentrt.engine.live import LiveStreams
from agentrt.engine.model_routing import StepRouter
from agentrt.engine.offer import Offer, Route, offer_tools
from agentrt.engine.plans import RunSpec
from agentrt.engine.scratch import ScratchSpace
from agentrt.engine.tool_policies import Verdict, refusal
from agentrt.errors import BudgetExhausted, OutputTruncated
from agentrt.models.base import Message, ModelClient, ModelRequest, ModelResponse, ToolCall
from agentrt.spec.patterns import search
from agentrt.spec.resources import Budgets, ToolSpec
from agentrt.state.base import Usage
from agentrt.state.budget_ledger import AccountDraft
from agentrt.tools.base import ToolContext, ToolResult, ToolSet

__all__ = [
    "LoopOutcome",
    "RunContext",
    "StepInfo",
    "request_digest",
    "retry_delay",
    "run_loop",
]

log = logging.getLogger(__name__)


@dataclass
class RunContext(ContextValues):
    """Everything one execution of a run needs, passed explicitly (also to hooks).

    ``now()`` and ``new_id()`` are the run's time and ids: recorded at the step
    the context is at, and returned from the log on resume and replay.
    """

    run_id: str
    namespace: str
    session_id: str | None
    spec: RunSpec
    input: str
    journal: Journal
    client_for: Callable[[str], ModelClient]
    tools: dict[str, ToolSet]  # by Tool resource name, in the Agent's order
    hooks: HookSet
    scratch: ScratchSpace | None = None
    routes: dict[str, Route] = field(default_factory=dict)  # model's tool name -> its tool
    noticed: set[str] = field(default_factory=set)  # notices of this run's offers so far
    # Timeouts of tool calls in flight: pausing the run's tools pushes them back.
    tool_timeouts: set[asyncio.Timeout] = field(default_factory=set)
    usage: Usage = field(default_factory=Usage)
    children: int = 0  # child runs its agent tools started, their own children included
    step: int = 0
    model_steps: int = 0  # the run's model steps so far, a summary's too (loop.max_steps)
    live: LiveStreams | None = None  # listeners to the run's steps as they happen
    child_draws: tuple[AccountDraft, ...] = ()  # what this turn's child runs draw on

    def next_step(self) -> int:
        """Allocate the next step number (deterministic: loop order)."""
        self.step += 1
        return self.step

    @property
    def budgets(self) -> Budgets:
        """The run's effective budgets."""
        return self.spec.budgets

    def charge(self, used: Usage) -> None:
        """Count what a step consumed against the run."""
        self.usage = self.usage + used

    def at(self, step: int) -> RunContext:
        """This context as hooks of ``step`` see it (concurrent tool steps each their own)."""
        return self if step == self.step else replace(self, step=step)


@dataclass(frozen=True)
class StepInfo:
    """What ``on_step`` hooks receive after each step."""

    step: int
    phase: Literal["plan", "act"]
    response: ModelResponse | None = None
    call: ToolCall | None = None
    result: ToolResult | None = None


@dataclass(frozen=True)
class LoopOutcome:
    """How the loop ended when it ended normally."""

    output: str
    steps: int


def initial_messages(spec: RunSpec, history: list[Message], user_input: str) -> list[Message]:
    """System prompt, the session's earlier conversation, then the new user message."""
    messages: list[Message] = []
    if spec.agent_spec.instructions:
        messages.append({"role": "system", "content": spec.agent_spec.instructions})
    messages.extend(history)
    messages.append({"role": "user", "content": user_input})
    return messages


async def run_loop(ctx: RunContext, history: list[Message]) -> LoopOutcome:
    """Run the agent's loop to a final answer.

    Raises:
        BudgetExhausted: a budget or ``loop.max_steps`` ran out.
        RunError: a model step failed after retries and fallbacks.
        StepUnknown: a tool step's outcome must be decided by a person.
        CheckFailed: the last routing tier's answer failed the Agent's ``routing.check``.
    """
    policy = ctx.spec.agent_spec.loop
    stop_pattern = policy.stop.output_matches
    messages = initial_messages(ctx.spec, history, ctx.input)
    router = StepRouter(ctx.spec, ctx.journal, ctx.hooks, ctx.input)
    tools = ToolPolicy(policy.step_timeout_s, policy.retry)
    parts: list[str] = []  # replies cut off by the output limit, continued (on_truncated)
    answer_at = len(messages)  # where the answer being written begins (parts and all)
    while ctx.model_steps < policy.max_steps:  # a session summary counts too
        check_budgets(ctx.budgets, ctx.usage)
        # plan
        step = ctx.next_step()
        name, response = await _plan(ctx, step, router, messages)
        messages.append(response.assistant_message())
        await ctx.hooks.run("on_step", ctx, StepInfo(step, "plan", response=response))
        # evaluate
        if response.finish_reason == "length" and policy.on_truncated != "accept":
            if policy.on_truncated == "fail" or response.tool_calls:
                limit = ctx.spec.models[name].max_output_tokens
                raise OutputTruncated(_truncated(step, response, limit))
            parts.append(response.content or "")
            messages.append(continuation())
            continue
        text = "".join(parts) + (response.content or "")
        parts = []
        if not response.tool_calls or (stop_pattern and text and search(stop_pattern, text)):
            if await router.escalates(step, name, text):
                del messages[answer_at:]  # a failed answer is not the conversation's
                continue
            return LoopOutcome(text, ctx.step)
        check_budgets(ctx.budgets, ctx.usage)
        calls = response.tool_calls
        results = await _act(ctx, calls, tools)
        for call, result in zip(calls, results, strict=True):
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result.output})
        answer_at = len(messages)
        # evaluate
        for call, result in zip(calls, results, strict=True):
            route = ctx.routes.get(call.name)
            named = {call.name, route.tool} if route else {call.name}
            if not named.isdisjoint(policy.stop.on_tools) and not result.is_error:
                return LoopOutcome(result.output, ctx.step)
    raise BudgetExhausted(f"loop.max_steps={policy.max_steps} reached without a final answer")


async def _plan(
    ctx: RunContext, step: int, router: StepRouter, messages: list[Message]
) -> tuple[str, ModelResponse]:
    """A plan step: the Model the Agent's routing picks (else its ``model``) and that
    Model's fallbacks, asked with the conversation so far."""
    agent = ctx.spec.agent_spec
    name, routed = await router.model_for(step)
    spec = ctx.spec.models[name]
    via = ModelChain.of(
        name, ctx.spec.models, ctx.client_for, agent.loop.retry, agent.loop.step_timeout_s
    )
    offer = await _offer_tools(ctx, step)
    request = ModelRequest(
        model=spec.model or name,
        messages=list(messages),
        tools=offer.defs,
        temperature=spec.temperature,
        max_output_tokens=spec.max_output_tokens,
    )
    record = _offer_record(ctx, offer)
    if routed is not None:
        record = {**record, "routing": routed}
    chain = replace(via, degrade=agent.degrade)
    response, _ = await model_step(ctx, step, chain, request, record=record)
    return name, response


async def _act(ctx: RunContext, calls: list[ToolCall], tools: ToolPolicy) -> list[ToolResult]:
    """Perform a model step's tool calls, each a tool step; then hooks observe them."""
    policy = ctx.spec.agent_spec.loop
    check_tool_calls(ctx.budgets, ctx.usage, len(calls))
    starting = _check_children(ctx, calls)
    left = _left(ctx, starting)
    numbered = [(ctx.next_step(), call) for call in calls]
    ctx.child_draws = _child_draws(ctx, left, numbered[0][0], len(calls)) if starting else ()
    verdicts = await policy_verdicts(
        ctx, ctx.spec.agent, [(s, c, ctx.routes.get(c.name)) for s, c in numbered]
    )
    await _require_approvals(ctx, numbered, verdicts)
    # A call its Policies refuse is refused before its quota is asked (and counts in none).
    refused = {s: r for s, c in numbered if (r := refusal(verdicts.get(s), c.name)) is not None}
    asked = [(s, _toolset(ctx, c)) for s, c in numbered if s not in refused]
    refused.update(await quota_refusals(ctx, asked))
    if policy.parallel_tool_calls and len(numbered) > 1:
        results = await _all_tool_steps(ctx, numbered, left, tools, refused, verdicts)
    else:
        results = [
            await _tool_step(ctx, s, c, left, tools, refused.get(s), verdicts.get(s))
            for s, c in numbered
        ]
    ctx.usage = ctx.usage + Usage(tool_calls=len(calls))
    for result in results:
        ctx.usage = ctx.usage + child_usage(result)  # agent tools spend the run's budget
        ctx.children += child_runs(result)
    for (step, call), result in zip(numbered, results, strict=True):
        await ctx.hooks.run("on_step", ctx, StepInfo(step, "act", call=call, result=result))
    return results


def _truncated(step: int, response: ModelResponse, limit: int | None) -> str:
    """Why a run ends on a reply cut off by the output limit, and what to change."""
    where = f"max_output_tokens={limit}" if limit is not None else "the server's output limit"
    what = "in the middle of its tool calls" if response.tool_calls else "by the output limit"
    fix = "raise the Model's max_output_tokens"
    if not response.tool_calls:
        fix += ", or set the Agent's loop.on_truncated: continue (or accept)"
    return f"the model's reply at step {step} was cut off {what} ({where}); {fix}"


async def _all_tool_steps(
    ctx: RunContext,
    numbered: list[tuple[int, ToolCall]],
    left: Budgets,
    tools: ToolPolicy,
    refused: dict[int, str],
    verdicts: dict[int, Verdict],
) -> list[ToolResult]:
    """Run a turn's tool calls concurrently; each ends (and is recorded) before any
    failure of one (an unknown step, a cancel) ends the turn: a call is never left
    running while the run is already recorded as waiting or ended."""
    outcomes = await asyncio.gather(
        *(_tool_step(ctx, s, c, left, tools, refused.get(s), verdicts.get(s)) for s, c in numbered),
        return_exceptions=True,
    )
    results: list[ToolResult] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        results.append(outcome)
    return results


async def _offer_tools(ctx: RunContext, step: int) -> Offer:
    """The tools offered at ``step``, under the names the model sees; sets ``ctx.routes``.

    Tools discovered at run time (an MCP server's) and every renamed tool are
    recorded with the step; a step that is already in the log is rebuilt from
    that record, so replay and resume never ask the server and resolve exactly
    the names the model saw.
    """
    recorded = ctx.journal.recorded(step)
    was = recorded.intent.data if recorded is not None and recorded.intent is not None else None
    offer = await offer_tools(ctx.tools, was)
    ctx.routes = offer.routes
    return offer


def _offer_record(ctx: RunContext, offer: Offer) -> dict[str, Any]:
    """What a new step records of its offer; notices only the first time in the run."""
    fresh = [n for n in offer.notices if n not in ctx.noticed]
    ctx.noticed.update(offer.notices)
    if ctx.journal.recorded(ctx.step) is None:  # a new step, not one rebuilt from the log
        for notice in fresh:
            log.warning("run %s: %s", ctx.run_id, notice)
    record: dict[str, Any] = {}
    if offer.offered:
        record["offered"] = offer.offered
    if offer.renamed:
        record["renamed"] = offer.renamed
    if fresh:
        record["notices"] = fresh
    return record


def needs_approval(spec: ToolSpec, call: ToolCall) -> bool:
    """Whether a person must approve this call (``approval.required`` and its ``when``)."""
    rule = spec.approval
    if not rule.required:
        return False
    if not rule.when:
        return True
    try:
        arguments = _json.loads(call.arguments or "{}")
    except ValueError:
        return True  # unreadable arguments: ask rather than guess
    if not isinstance(arguments, dict):
        return True
    return all(search(pattern, str(arguments.get(name, ""))) for name, pattern in rule.when.items())


async def _require_approvals(
    ctx: RunContext, numbered: list[tuple[int, ToolCall]], verdicts: dict[int, Verdict]
) -> None:
    """Before any call of a turn runs, every call that needs approval must have it: its
    Tool's ``approval`` asks for it, or its Policies' verdict (a call they deny is
    refused without asking anyone)."""
    pending: list[tuple[int, ToolCall]] = []
    for step, call in numbered:
        route, verdict = ctx.routes.get(call.name), verdicts.get(step)
        effect = verdict.effect if verdict is not None else None
        if route is None or effect == "deny":
            continue
        if effect != "require_approval" and not needs_approval(route.toolset.spec, call):
            continue
        rec = ctx.journal.recorded(step)
        if rec is not None and (rec.result is not None or rec.approval is not None):
            continue
        pending.append((step, call))
    if not pending:
        return
    for step, call in pending:
        rec = ctx.journal.recorded(step)
        if rec is None or rec.approval_requested is None:
            data: dict[str, Any] = {"name": call.name, "args": call.arguments}
            if (verdict := verdicts.get(step)) is not None:
                data["policy"] = verdict.record()  # the step's verdict, kept for its call
            await ctx.journal.append(ev.APPROVAL_REQUESTED, data, step=step, durable=False)
    if not ctx.journal.replay:
        await ctx.journal.flush()
    raise ApprovalPending([s for s, _ in pending], [c.name for _, c in pending])


def child_usage(result: ToolResult) -> Usage:
    """What a child run (an agent tool's call) consumed, as recorded in its trace."""
    used = result.trace.get("usage") if result.trace else None
    if not used:
        return Usage()
    tokens_in, tokens_out, cost, model_calls, tool_calls = used
    return Usage(int(tokens_in), int(tokens_out), float(cost), int(model_calls), int(tool_calls))


def child_runs(result: ToolResult) -> int:
    """Child runs an agent tool's call started: its child and the child's own, as recorded."""
    trace = result.trace
    if not trace or not trace.get("child_run"):
        return 0
    return 1 + int(trace.get("child_runs", 0))


def _check_children(ctx: RunContext, calls: list[ToolCall]) -> int:
    """How many child runs this turn's agent tools start; refused beyond the budgets.

    Without these bounds an agent that is its own agent tool (directly or through
    others) starts child runs without end.
    """
    starting = sum(
        1
        for call in calls
        if (route := ctx.routes.get(call.name)) is not None and route.toolset.spec.kind == "agent"
    )
    b = ctx.spec.budgets
    if not starting:
        return 0
    if b.max_depth is not None and b.max_depth <= 0:
        raise BudgetExhausted(
            f"budgets.max_depth reached: this run is as deep as agent tools may nest child "
            f"runs, so it cannot start {starting} more (raise budgets.max_depth of the run "
            "that began the chain)"
        )
    if b.max_child_runs is not None and ctx.children + starting > b.max_child_runs:
        raise BudgetExhausted(
            f"budgets.max_child_runs={b.max_child_runs} would be exceeded "
            f"({count(ctx.children, 'child run')} started, theirs included; "
            f"{starting} more requested)"
        )
    return starting


def _left(ctx: RunContext, children: int = 0) -> Budgets:
    """What the run may still consume, as the child runs of this turn draw on it.

    Each of the ``children`` this turn's agent tools start may nest one level less,
    and may start an equal slice of the child runs left after them.
    """
    b, u = ctx.spec.budgets, ctx.usage
    runs_left = None
    if b.max_child_runs is not None:
        runs_left = max(0, b.max_child_runs - ctx.children - children) // max(1, children)
    return Budgets(
        max_tokens=None if b.max_tokens is None else max(1, b.max_tokens - u.total_tokens),
        max_tool_calls=None
        if b.max_tool_calls is None
        else max(0, b.max_tool_calls - u.tool_calls),
        max_cost_usd=None if b.max_cost_usd is None else max(0.0, b.max_cost_usd - u.cost_usd),
        deadline_s=b.deadline_s,
        max_child_runs=runs_left,
        max_depth=None if b.max_depth is None else max(0, b.max_depth - 1),
    )


def _child_draws(ctx: RunContext, left: Budgets, step: int, calls: int) -> tuple[AccountDraft, ...]:
    """The accounts the child runs of the turn at ``step`` draw on: one of the turn,
    limited to what the run had left (less the turn's ``calls``), and those the run
    itself draws on as a child."""
    turn = run_account(ctx.namespace, ctx.run_id, left, step=step, tool_calls_taken=calls)
    return ctx.journal.scope.above + (() if turn is None else (turn,))


def _toolset(ctx: RunContext, call: ToolCall) -> ToolSet | None:
    route = ctx.routes.get(call.name)
    return route.toolset if route is not None else None


async def _tool_step(
    ctx: RunContext,
    step: int,
    call: ToolCall,
    left: Budgets,
    tools: ToolPolicy,
    refused: str | None = None,
    verdict: Verdict | None = None,
) -> ToolResult:
    route = ctx.routes.get(call.name)
    sandboxed = route is not None and route.toolset.spec.kind == "code"
    scratch = ctx.scratch.dir_of(ctx.run_id) if ctx.scratch and sandboxed else None
    tctx = ToolContext(
        ctx.run_id, step, call.id, ctx.namespace, ctx.session_id, 1, scratch, left,
        draws_on=ctx.child_draws, budget_session=ctx.journal.scope.session,
    )  # fmt: skip
    return await tool_step(
        ctx, step, call, route, tctx, tools, refused=refused, verdict=verdict, known=ctx.routes
    )
