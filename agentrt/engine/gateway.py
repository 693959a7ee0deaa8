"""The one gateway of a run's model and tool calls: hooks, budgets, quotas, retries, journal.

Every model call a run makes (a loop step, a session summary, a team's route)
goes through :func:`model_step`, and every tool call (a loop step, a team's
tool node) through :func:`tool_step`. Each wraps the journal's durable step in
the same things, in the same order:

- model steps: the run's token and cost budgets are checked, ``before_model``
  hooks edit the request, the step's worst case is reserved against its
  tenant's Budgets (:mod:`agentrt.engine.tenant_budgets`; settled when its result
  is recorded), the journal returns the recorded response or performs the
  call: retries under the step's retry policy, then each fallback model, every
  answer through ``after_model`` hooks; each attempt first takes its turn under
  its Model's rate limits (:mod:`agentrt.engine.model_rate_limits`). The step counts
  against the run's model calls and its usage. While someone listens to the
  run live (:mod:`agentrt.engine.live`), a call the journal performs first
  writes what the run buffered (the listeners see the step begin), then
  streams its reply to them as it comes; it is recorded whole, as any other.
  A Model whose endpoint's circuit is open is skipped for the next one
  (:mod:`agentrt.engine.model_route`), and a Model with replicas is called at
  the one its session sticks to (:mod:`agentrt.engine.replicas`); while a tenant
  Budget runs low, an Agent with ``degrade`` asks only the cheapest of its chain
  (:mod:`agentrt.engine.degrade`).
- tool steps: the tenant's Policies decide each new call first
  (:func:`policy_verdicts`, see :mod:`agentrt.engine.tool_policies`), then quotas
  are asked (:func:`quota_refusals`), the journal returns the recorded result or
  performs the call: ``before_tool`` hooks, the Tool under its timeout (retried
  when idempotent), ``after_tool`` hooks.

Hooks get the run's context at the step they wrap (see :class:`StepHost`), so a
hook's ``ctx.now()`` and ``ctx.new_id()`` are recorded at that step.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from agentrt import _json
from agentrt.engine import events as ev
from agentrt.engine.context_values import fresh_id
from agentrt.engine.degrade import degraded_chain
from agentrt.engine.hooks import HookSet
from agentrt.engine.journal import Journal
from agentrt.engine.live import LiveStreams, StepSink
from agentrt.engine.model_rate_limits import take_turn
from agentrt.engine.model_route import ModelRoute, why_failed
from agentrt.engine.offer import Route
from agentrt.engine.scratch import ScratchSpace
from agentrt.engine.tenant_budgets import hold_model_step
from agentrt.engine.tool_policies import CallFacts, Verdict, decide, tenant_policies
from agentrt.errors import BudgetExhausted, ModelError, RunError, StepTimeout, ToolError
from agentrt.models.base import (
    RETRY_AFTER_CAP_S,
    ModelClient,
    ModelRequest,
    ModelResponse,
    StreamingModelClient,
    ToolCall,
    check_usage,
)
from agentrt.models.replicated import ReplicaClients
from agentrt.spec.resources import Budgets, Degrade, ModelSpec, RetryPolicy, ToolSpec
from agentrt.state.base import Usage
from agentrt.tools.base import ToolContext, ToolResult, ToolSet
from agentrt.tools.quotas import quota_refusal

__all__ = [
    "ContextValues",
    "ModelChain",
    "StepHost",
    "ToolPolicy",
    "check_budgets",
    "check_tool_calls",
    "has_quota",
    "model_step",
    "policy_verdicts",
    "quota_refusals",
    "request_digest",
    "retry_delay",
    "tool_step",
]


class ContextValues:
    """``now()`` and ``new_id()`` of a run's context: recorded by the journal at the step the
    context is at, so resume and replay return the same values
    (see :mod:`agentrt.engine.context_values`).
    """

    journal: Journal
    step: int

    def now(self) -> float:
        """The time (Unix seconds): the clock the first time, the recorded time on replay."""
        return float(self.journal.value("now", self.step, self.journal.clock))

    def new_id(self) -> str:
        """A new random id (16 hex digits), recorded: replay returns the same id."""
        return str(self.journal.value("id", self.step, fresh_id))


class StepHost(Protocol):
    """What a step needs of the run it belongs to: an agent run's context or a team's."""

    run_id: str
    namespace: str
    session_id: str | None
    journal: Journal
    hooks: HookSet
    scratch: ScratchSpace | None
    tool_timeouts: set[asyncio.Timeout]
    model_steps: int  # model steps taken (recorded ones included)
    live: LiveStreams | None  # who listens to the run's steps as they happen

    @property
    def usage(self) -> Usage:
        """What the run has consumed so far."""
        ...

    @property
    def budgets(self) -> Budgets:
        """What the run may consume."""
        ...

    def charge(self, used: Usage) -> None:
        """Count what a step consumed against the run."""
        ...

    def at(self, step: int) -> Any:
        """The context hooks get for ``step`` (its values are recorded at that step)."""
        ...


@dataclass(frozen=True, slots=True)
class ModelChain:
    """The models a model step may call, in order, and how it retries each one."""

    name: str  # the Model the step is for, as recorded
    chain: Sequence[str]  # that Model, then its fallbacks
    models: Mapping[str, ModelSpec]
    client_for: Callable[[str], ModelClient]
    retry: RetryPolicy
    step_timeout_s: float
    timeout_field: str = "loop.step_timeout_s"  # where the limit is set, for the message
    degrade: Degrade | None = None  # the Agent's: only the cheapest while a Budget runs low

    @classmethod
    def of(
        cls,
        name: str,
        models: Mapping[str, ModelSpec],
        client_for: Callable[[str], ModelClient],
        retry: RetryPolicy,
        step_timeout_s: float,
        timeout_field: str = "loop.step_timeout_s",
    ) -> ModelChain:
        """``name`` and those of its fallbacks that ``models`` holds, without repeats."""
        chain = [name]
        for fallback in models[name].fallbacks:
            if fallback not in chain and fallback in models:
                chain.append(fallback)
        return cls(name, chain, models, client_for, retry, step_timeout_s, timeout_field)


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """How a tool step performs its call: the step's time limit and its retries."""

    step_timeout_s: float
    retry: RetryPolicy

    def timeout_of(self, spec: ToolSpec) -> float:
        """The Tool's own timeout, within the step's."""
        return min(spec.timeout_s or self.step_timeout_s, self.step_timeout_s)

    def attempts_of(self, spec: ToolSpec) -> int:
        """Only an idempotent Tool is called again after a failed attempt."""
        return self.retry.max_attempts if spec.idempotent else 1


def request_digest(request: ModelRequest) -> str:
    """Fingerprint of what the model is asked, checked again on resume and replay."""
    body = {
        "m": request.messages,
        "t": [t.name for t in request.tools],
    }
    return hashlib.blake2b(_json.dumps(body), digest_size=8).hexdigest()


def check_budgets(budgets: Budgets, usage: Usage) -> None:
    """Raise :class:`BudgetExhausted` when the tokens or cost budget is used up."""
    if budgets.max_tokens is not None and usage.total_tokens >= budgets.max_tokens:
        raise BudgetExhausted(
            f"budgets.max_tokens={budgets.max_tokens} reached ({usage.total_tokens} used)"
        )
    if budgets.max_cost_usd is not None and usage.cost_usd >= budgets.max_cost_usd:
        raise BudgetExhausted(
            f"budgets.max_cost_usd={budgets.max_cost_usd} reached (${usage.cost_usd:.6f} spent)"
        )


def check_tool_calls(budgets: Budgets, usage: Usage, more: int) -> None:
    """Raise :class:`BudgetExhausted` when ``more`` tool calls would exceed the budget."""
    limit = budgets.max_tool_calls
    if limit is not None and usage.tool_calls + more > limit:
        raise BudgetExhausted(
            f"budgets.max_tool_calls={limit} would be exceeded "
            f"({usage.tool_calls} made, {more} more requested)"
        )


async def model_step(
    host: StepHost,
    step: int,
    via: ModelChain,
    request: ModelRequest,
    *,
    record: Mapping[str, Any] | None = None,
) -> tuple[ModelResponse, dict[str, Any]]:
    """A model step: budgets, ``before_model`` hooks, then the journal's recorded or new
    response (see the module docstring). ``record`` goes with the step's intent.

    Raises:
        BudgetExhausted: the run's tokens or cost are used up.
        RunError: the call failed after its retries and fallbacks.
    """
    journal = host.journal
    recorded = journal.recorded(step)
    fresh = recorded is None or recorded.result is None  # a recorded step was allowed
    if fresh:
        check_budgets(host.budgets, host.usage)
    if host.hooks.has("before_model"):
        request = await host.hooks.run("before_model", host.at(step), request)
    held = None
    if fresh and not journal.replay:
        via, degraded = await degraded_chain(journal, host.namespace, step, via, request)
        if degraded is not None:
            record = {**(record or {}), "degraded": degraded}
        request, held = await hold_model_step(
            journal.store, journal.budgets, namespace=host.namespace, run_id=host.run_id, step=step,
            request=request, chain=[via.models[name] for name in via.chain], now=journal.clock(),
            scope=journal.scope,
        )  # fmt: skip
    response, data = await journal.model_step(
        step,
        model=via.name,
        digest=request_digest(request),
        perform=functools.partial(_call_model, host, step, via, request),
        record=record,
        settle=held,
    )
    host.model_steps += 1
    if journal.replicas is not None and isinstance(data.get("replica"), str):
        # A recorded step places its session where it went: a resumed run stays there.
        model, session = str(data.get("via") or via.name), host.session_id or host.run_id
        journal.replicas.remember(host.namespace, model, session, data["replica"])
    cost = float(data.get("cost", 0.0))
    host.charge(Usage(response.input_tokens, response.output_tokens, cost, 1, 0))
    return response, data


async def _call_model(
    host: StepHost, step: int, via: ModelChain, request: ModelRequest
) -> tuple[ModelResponse, dict[str, Any], Usage]:
    """One model step: retries under the step's policy, then each fallback model in turn."""
    error: RunError = ModelError("no model to call")
    route = ModelRoute(host.journal, host.namespace, step, via.models, call_s=via.step_timeout_s)
    sink = None
    if host.live is not None and host.live.listening(host.run_id):
        sink = host.live.sink(host.run_id, step, lambda: host.journal.last_seq)
        await host.journal.flush()  # the listeners see what came before the step first
    session = host.session_id or host.run_id  # whose replica the calls stick to
    for name in via.chain:
        replica, skipped = await route.place(name, session)
        if skipped is not None:
            error = skipped
            continue
        spec = via.models[name]
        attempt_request = replace(request, model=spec.model or name)
        client = via.client_for(name)
        for attempt in range(1, via.retry.max_attempts + 1):
            sent = await take_turn(host.journal, host.namespace, step, name, spec, attempt_request)
            at = client.at(replica) if replica and isinstance(client, ReplicaClients) else client
            try:
                async with asyncio.timeout(via.step_timeout_s):
                    replied = await _ask(at, sent, sink, name, attempt)
                    response = check_usage(replied, model=name)
            except TimeoutError:
                error = StepTimeout(
                    f"model {name!r} did not answer within {via.timeout_field}={via.step_timeout_s}"
                )
            except ModelError as exc:
                error = exc
            else:
                if host.hooks.has("after_model"):
                    response = await host.hooks.run("after_model", host.at(step), response)
                cost = spec.pricing.cost(
                    response.input_tokens, response.output_tokens, response.cached_tokens
                )
                extra: dict[str, Any] = {"cost": cost, **await route.answered(name, attempt)}
                if name != via.name:
                    extra["via"] = name
                if replica is not None:
                    extra["replica"] = replica
                usage = Usage(response.input_tokens, response.output_tokens, cost, 1, 0)
                return response, extra, usage
            opened = await route.failed(name, attempt, error)  # its circuit: try it no more
            why = why_failed(error)
            recorded: dict[str, Any] = {
                "model": name, "attempt": attempt, "why": why, "error": error.to_dict()
            }  # fmt: skip
            moved = replica is not None and (opened or why == "unreachable")
            if replica is not None:
                recorded["replica"] = replica
            if moved:  # the session moves to another replica, at once
                route.down(name)
                replica, skipped = await route.place(name, session)
                opened = skipped is not None
            retrying = error.retryable and attempt < via.retry.max_attempts and not opened
            if retrying:
                asked = error.retry_after if isinstance(error, ModelError) else None
                delay = retry_delay(via.retry, attempt, asked, step_timeout_s=via.step_timeout_s)
                delay = 0.0 if moved else delay
                recorded["retry_in"] = delay
            await host.journal.append(ev.MODEL_ERROR, recorded, step=step, durable=False)
            if not retrying:
                break
            await asyncio.sleep(delay)
    raise error


def _ask(
    client: ModelClient, request: ModelRequest, sink: StepSink | None, name: str, attempt: int
) -> Awaitable[ModelResponse]:
    """The model's reply: streamed to the run's listeners when there are any (and the
    client can), else whole, the usual way with nobody listening."""
    if sink is not None and isinstance(client, StreamingModelClient):
        return client.stream(request, sink.receiver(name, attempt))
    return client.complete(request)


def retry_delay(
    policy: RetryPolicy, attempt: int, retry_after: float | None, *, step_timeout_s: float
) -> float:
    """The wait before retry ``attempt`` (1-based) of a failed step.

    The policy's backoff, or the provider's ``Retry-After`` when longer (up to
    :data:`RETRY_AFTER_CAP_S`); never longer than the step timeout, so no wait
    outlasts what one attempt of the step may take.
    """
    delay = policy.backoff(attempt)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP_S))
    return min(delay, step_timeout_s)


def has_quota(spec: ToolSpec) -> bool:
    """Whether the Tool limits how often it is called."""
    q = spec.quotas
    return q.per_run is not None or q.per_session is not None or q.per_tenant_per_day is not None


async def quota_refusals(
    host: StepHost, steps: Iterable[tuple[int, ToolSet | None]]
) -> dict[int, str]:
    """Which new tool steps their Tool's quotas refuse (checked in the order given).

    A step already in the log was decided when it was recorded; replay asks nothing.
    The quota's day is the live clock's, not a recorded value: only a live run asks.
    """
    refused: dict[int, str] = {}
    if host.journal.replay:
        return refused
    pending: dict[str, int] = {}
    for step, toolset in steps:
        if toolset is None or not has_quota(toolset.spec):
            continue
        rec = host.journal.recorded(step)
        if rec is not None and rec.intent is not None:
            continue
        message = await quota_refusal(
            host.journal.store,
            spec=toolset.spec,
            toolset=toolset.name,
            namespace=host.namespace,
            session_id=host.session_id,
            calls_in_run=host.journal.calls_of(toolset.name),
            now=host.journal.clock(),
            pending=pending.get(toolset.name, 0),
        )
        if message is None:
            pending[toolset.name] = pending.get(toolset.name, 0) + 1
        else:
            refused[step] = message
    return refused


async def policy_verdicts(
    host: StepHost, agent: str, steps: Iterable[tuple[int, ToolCall, Route | None]]
) -> dict[int, Verdict]:
    """What the tenant's Policies say of each tool step of ``agent``'s run.

    A step the log has was decided when it was recorded: a call made or refused
    gets nothing here (the journal returns what it recorded), one waiting for or
    decided by a person gets the verdict its request recorded. Only a new step is
    decided now, by the Policies as the journal's book has them; replay decides
    nothing, and a tenant without a Policy gets no verdicts.
    """
    verdicts: dict[int, Verdict] = {}
    fresh: list[tuple[int, ToolCall, Route]] = []
    for step, call, route in steps:
        rec = host.journal.recorded(step)
        if rec is not None and rec.intent is not None:
            continue
        if rec is not None and rec.approval_requested is not None:
            found = Verdict.recorded(rec.approval_requested.data.get("policy"))
            if found is not None:
                verdicts[step] = found
        elif route is not None and not host.journal.replay:
            fresh.append((step, call, route))
    if not fresh:
        return verdicts
    journal = host.journal
    if journal.policies is not None:
        policies = await journal.policies.policies(journal.store, host.namespace)
    else:
        policies = await tenant_policies(journal.store, host.namespace)
    for step, call, route in fresh:
        verdict = decide(policies, _facts(host, agent, call, route))
        if verdict is not None:
            verdicts[step] = verdict
    return verdicts


def _facts(host: StepHost, agent: str, call: ToolCall, route: Route) -> CallFacts:
    try:
        arguments = _json.loads(call.arguments or "{}")
    except ValueError:
        arguments = None
    journal = host.journal
    return CallFacts(
        host.namespace, journal.principal, journal.role, agent, route.toolset.name, route.tool,
        arguments if isinstance(arguments, dict) else None,
    )  # fmt: skip


async def tool_step(
    host: StepHost,
    step: int,
    call: ToolCall,
    route: Route | None,
    tctx: ToolContext,
    policy: ToolPolicy,
    *,
    refused: str | None = None,
    verdict: Verdict | None = None,
    known: Iterable[str] = (),
    performing: Callable[[], None] | None = None,
) -> ToolResult:
    """A tool step: the journal's recorded result, a reconciled one, or the call performed
    (see the module docstring). ``refused`` (a quota's or a Policy's message) records the
    call as failed without performing it; ``verdict`` (the tenant's Policies') is recorded
    with a new call; ``known`` names the tools a call of an unknown one could use;
    ``performing`` is told when the call's intent is durable and the call begins.

    Raises:
        StepUnknown: the call started before a crash and its outcome must be decided.
    """
    tool = route.toolset if route is not None else None
    perform = functools.partial(_execute_tool, host, route, call, tctx, policy, known, performing)
    return await host.journal.tool_step(step, call, tool, tctx, perform, refused, verdict)


async def _execute_tool(
    host: StepHost,
    route: Route | None,
    call: ToolCall,
    tctx: ToolContext,
    policy: ToolPolicy,
    known: Iterable[str],
    performing: Callable[[], None] | None,
) -> tuple[ToolResult, float]:
    """Perform a tool call; every failure becomes an error result."""
    if performing is not None:
        performing()
    started = time.perf_counter()
    if host.scratch is not None and tctx.scratch is not None:
        await host.scratch.prepare(host.run_id)  # the run's files, wherever it ran before
    try:
        if route is None:
            available = ", ".join(sorted(known)) or "none"
            raise ToolError(f"unknown tool {call.name!r}; available tools: {available}")
        try:
            arguments = _json.loads(call.arguments or "{}")
        except ValueError as exc:
            raise ToolError(f"arguments of {call.name} are not valid JSON: {exc}") from None
        if not isinstance(arguments, dict):
            raise ToolError(f"arguments of {call.name} must be a JSON object")
        if host.hooks.has("before_tool"):
            call = await host.hooks.run("before_tool", host.at(tctx.step), call)
        spec = route.toolset.spec
        timeout = policy.timeout_of(spec)
        result = await _attempt_tool(
            route.toolset,
            route.tool,  # the name the Tool knows it by (the model may see another)
            arguments,
            tctx,
            timeout,
            policy.attempts_of(spec),
            functools.partial(retry_delay, policy.retry, retry_after=None, step_timeout_s=timeout),
            host.tool_timeouts,
        )
    except ToolError as exc:
        result = ToolResult(exc.message, is_error=True)
    if host.scratch is not None and tctx.scratch is not None:
        # The files as they are after this step: what a fork from here starts with.
        await host.scratch.snapshot(host.run_id, tctx.step, owner=host.journal.owner)
    if host.hooks.has("after_tool"):
        result = await host.hooks.run("after_tool", host.at(tctx.step), result)
    return result, time.perf_counter() - started


async def _attempt_tool(
    tool: ToolSet,
    name: str,
    arguments: dict[str, Any],
    tctx: ToolContext,
    limit_s: float,
    attempts: int,
    backoff: Callable[[int], float],
    timeouts: set[asyncio.Timeout],
) -> ToolResult:
    for attempt in range(1, attempts + 1):
        try:
            async with asyncio.timeout(limit_s) as deadline:
                timeouts.add(deadline)
                try:
                    return await tool.call(name, arguments, replace(tctx, attempt=attempt))
                finally:
                    timeouts.discard(deadline)
        except TimeoutError:
            error = ToolError(f"tool {name!r} timed out after {limit_s:g}s", retryable=True)
        except ToolError as exc:
            error = exc
        except Exception as exc:  # a tool's own exception is an observation for the model
            error = ToolError(f"{type(exc).__name__}: {exc}")
        if not error.retryable or attempt == attempts:
            raise error
        await asyncio.sleep(backoff(attempt))
    raise ToolError(f"tool {name!r} was not attempted")
