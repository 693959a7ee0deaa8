"""A team run's own steps, its routes' model calls and its tool nodes, through the gateway.

A team run calls models and tools itself, not only through its nodes' child
runs: a route node may ask a model which member answers, and a tool node
calls a Tool. Each of those calls is a journal step of the team run, made by
the same gateway as an agent's loop steps (:mod:`agentrt.engine.gateway`): the
runtime's hooks wrap it (``ctx`` is the team's :class:`TeamContext`), the
team's budgets are checked before it, a tool node's call is decided by its
tenant's Policies (under the team's name as the agent; one that would wait for
approval is refused, as nobody can be waited for here) and counts against its
Tool's quotas, and a route's model call is retried under the node's ``retry``
and falls back to the Model's fallbacks. A route's step is found again by the
node instance's key; a tool node attempt's step is the one its ``node.started``
claimed, and a crash during it is reconciled like any tool step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agentrt import _json
from agentrt.engine.gateway import (
    ContextValues,
    ModelChain,
    ToolPolicy,
    check_tool_calls,
    model_step,
    policy_verdicts,
    quota_refusals,
    tool_step,
)
from agentrt.engine.hooks import HookSet
from agentrt.engine.journal import Journal, StepUnknown
from agentrt.engine.live import LiveStreams
from agentrt.engine.offer import Route
from agentrt.engine.scratch import ScratchSpace
from agentrt.engine.team_walk import TeamFailed, choose_prompt
from agentrt.engine.tool_policies import refusal
from agentrt.errors import ModelError, StepTimeout
from agentrt.models.base import ModelClient, ModelRequest, ToolCall
from agentrt.spec.resources import Budgets, ModelSpec, RetryPolicy, TeamNode, ToolSpec
from agentrt.state.base import RunRecord, Usage
from agentrt.tools.base import ToolContext, ToolResult, ToolSet
from agentrt.tools.keys import StepKey

__all__ = ["ROUTE_STEP", "TeamContext", "TeamSteps"]

ROUTE_STEP = "route"
"""The ``kind`` a route's ``model.call`` records."""

_TOOL_NODE_TIMEOUT_S = 300.0
_ROUTE_TIMEOUT_S = 120.0  # as an agent's loop.step_timeout_s by default
_ONE_ATTEMPT = RetryPolicy(max_attempts=1)  # a tool node is retried as a node, see team_run


@dataclass
class TeamContext(ContextValues):
    """What a team run's own steps need; hooks get it as ``ctx`` for those steps.

    ``usage`` is the team run's: what it had consumed when this execution took
    it up and what the events recorded since added (its nodes' child runs too).
    """

    run_id: str
    namespace: str
    journal: Journal
    hooks: HookSet
    budgets: Budgets
    used_before: Usage = field(default_factory=Usage)
    scratch: ScratchSpace | None = None
    session_id: str | None = None
    tool_timeouts: set[asyncio.Timeout] = field(default_factory=set)
    step: int = 0
    model_steps: int = 0
    live: LiveStreams | None = None  # listeners to the team's own steps (its routes)
    team: str = ""  # the Team's name: what the tenant's Policies see as the agent

    @property
    def usage(self) -> Usage:
        """What the team run has consumed so far."""
        return self.used_before + self.journal.spent

    def charge(self, used: Usage) -> None:
        """Nothing to add: the journal counts what the team's events add to its usage."""

    def at(self, step: int) -> TeamContext:
        """This context as the hooks of ``step`` see it."""
        return replace(self, step=step)


class TeamSteps:
    """The route and tool node callers :func:`~agentrt.engine.team_walk.run_team` is given."""

    def __init__(
        self,
        ctx: TeamContext,
        models: dict[str, ModelSpec],
        tools: dict[str, ToolSpec],
        client: Callable[[str, ModelSpec], ModelClient],
        tool: Callable[[str, ToolSpec], ToolSet],
    ) -> None:
        self.ctx = ctx
        self._models = models
        self._tools = tools
        self._client = client
        self._tool = tool
        # Tool nodes run concurrently: each one's budget and quota checks hold this until
        # its call's intent is recorded, so the next check counts that call.
        self._checks = asyncio.Lock()

    @classmethod
    def of(
        cls,
        run: RunRecord,
        created: dict[str, Any],
        journal: Journal,
        budgets: Budgets,
        *,
        hooks: HookSet,
        client: Callable[[str, ModelSpec], ModelClient],
        tool: Callable[[str, ToolSpec], ToolSet],
        scratch: ScratchSpace | None,
    ) -> TeamSteps:
        """The steps of team run ``run``, with the models and tools its ``run.created`` froze."""
        models = {n: ModelSpec.model_validate(m) for n, m in created.get("models", {}).items()}
        tools = {n: ToolSpec.model_validate(t) for n, t in created.get("tools", {}).items()}
        ctx = TeamContext(
            run.id, run.namespace, journal, hooks, budgets, run.usage, scratch, run.session_id,
            team=run.agent,
        )  # fmt: skip
        return cls(ctx, models, tools, client, tool)

    def _client_for(self, name: str) -> ModelClient:
        return self._client(name, self._models[name])

    async def choose(self, node: TeamNode, text: str, key: StepKey) -> tuple[str, dict[str, Any]]:
        """Ask a route node's model which member answers: a model step of the team run.

        Returns the model's reply and what ``node.finished`` records of the step.

        Raises:
            TeamFailed: the model is not frozen in the run, or failed after its
                retries and fallbacks.
            BudgetExhausted: the team's tokens or cost are used up.
        """
        assert node.route is not None and node.route.model is not None
        model, members = node.route.model, node.route.members
        spec = self._models.get(model)
        if spec is None:
            raise TeamFailed(f"model {model!r} is not frozen in the team run")
        journal = self.ctx.journal
        step = journal.keyed_step(str(key)) or journal.new_step()
        request = ModelRequest(
            model=spec.model or model,
            messages=[
                {"role": "system", "content": choose_prompt(members)},
                {"role": "user", "content": text},
            ],
        )
        via = ModelChain.of(
            model, self._models, self._client_for, node.retry, _ROUTE_TIMEOUT_S, "a route's limit"
        )
        record = {"kind": ROUTE_STEP, "key": str(key)}
        try:
            response, _ = await model_step(self.ctx, step, via, request, record=record)
        except (ModelError, StepTimeout) as exc:
            raise TeamFailed(f"routing model {model!r} failed: {exc.message}") from None
        return response.content or "", {"step": step}

    async def run_tool(
        self, node: TeamNode, text: str, key: StepKey, step: int | None
    ) -> dict[str, Any]:
        """Call a tool node's Tool: a tool step of the team run, sent the instance's key.

        ``step`` is the attempt's step; ``None`` for an attempt an older version
        started (it recorded no step). Returns the outcome as ``node.finished``
        data: ``child_status`` (``succeeded``, ``failed``, ``refused`` by a quota or Policy,
        ``unknown`` after a crash), ``output``, ``reason``, ``trace``, ``step``.

        Raises:
            BudgetExhausted: the call would exceed the team's ``max_tool_calls``.
        """
        assert node.tool is not None
        name, spec = node.tool, self._tools[node.tool]
        if spec.approval.required:
            return _failed(
                f"Tool {name} needs approval; a team's tool node cannot wait for a person "
                "yet: call it from an agent node instead"
            )
        toolset = self._tool(name, spec)
        found = await toolset.definitions()
        named = [d.name for d in found if d.name == name] or (
            [found[0].name] if len(found) == 1 else []
        )
        if not named:
            offered = ", ".join(d.name for d in found)
            return _failed(
                f"Tool {name} offers several tools ({offered}); a tool node calls a Tool "
                "that offers one (or one named like the Tool)"
            )
        if step is None:  # its call may have happened: only an idempotent Tool runs again
            if spec.unknown_policy() != "rerun":
                return _unknown(name)
            step = self.ctx.journal.new_step()
        return {**await self._call(toolset, named[0], text, key, step), "step": step}

    async def _call(
        self, toolset: ToolSet, tool: str, text: str, key: StepKey, step: int
    ) -> dict[str, Any]:
        ctx, spec = self.ctx, toolset.spec
        scratch = ctx.scratch.dir_of(ctx.run_id) if ctx.scratch and spec.kind == "code" else None
        call = ToolCall(key.local, tool, _json.dumps_str(_tool_arguments(text)))
        tctx = ToolContext(ctx.run_id, step, key.local, ctx.namespace, None, 1, scratch, None, key)
        policy = ToolPolicy(spec.timeout_s or _TOOL_NODE_TIMEOUT_S, _ONE_ATTEMPT)
        held = _Held(self._checks)
        try:
            await held.acquire()
            rec = ctx.journal.recorded(step)
            if rec is None or rec.intent is None:  # a new call (a recorded one was counted)
                check_tool_calls(ctx.budgets, ctx.usage, 1)
            route = Route(toolset, tool)
            verdict = (await policy_verdicts(ctx, ctx.team, [(step, call, route)])).get(step)
            refused = refusal(verdict, toolset.name, can_wait=False)
            if refused is None:
                refused = (await quota_refusals(ctx, [(step, toolset)])).get(step)
            result = await tool_step(
                ctx, step, call, route, tctx, policy, refused=refused, verdict=verdict,
                performing=held.release,
            )  # fmt: skip
        except StepUnknown:
            return _unknown(toolset.name)
        finally:
            held.release()
        if refused is not None:
            return {**_failed(result.output, status="refused"), "trace": result.trace}
        return _tool_node_result(result)


class _Held:
    """A lock taken once and released once, by whoever releases it first."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock
        self._held = False

    async def acquire(self) -> None:
        await self._lock.acquire()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


def _tool_arguments(text: str) -> dict[str, Any]:
    """A tool node's arguments: its input when that is a JSON object, else ``{input: text}``."""
    try:
        parsed = _json.loads(text)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"input": text}


def _tool_node_result(result: ToolResult) -> dict[str, Any]:
    if result.is_error:
        return {**_failed(result.output), "trace": result.trace}
    return {"child_status": "succeeded", "output": result.output, "trace": result.trace}


def _unknown(tool: str) -> dict[str, Any]:
    return _failed(
        f"Tool {tool} was started before a crash and may or may not have run; "
        "it is not idempotent and has no lookup, so the node is not run again",
        status="unknown",
    )


def _failed(reason: str, *, status: str = "failed") -> dict[str, Any]:
    return {"child_status": status, "output": None, "reason": reason}
