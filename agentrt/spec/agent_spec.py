"""The spec of an ``Agent`` resource: model, tools, loop policy, budgets, hooks, memory."""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import (
    Field,
)

from agentrt.spec._base import CALLABLE, Names, Strict
from agentrt.spec.patterns import Regex
from agentrt.spec.routing_spec import Routing

__all__ = [
    "DOUBLE_TEXTING",
    "AgentSpec",
    "Budgets",
    "Degrade",
    "DoubleTexting",
    "Hooks",
    "LoopPolicy",
    "Memory",
    "PRIORITIES",
    "PriorityClass",
    "RetryPolicy",
    "SessionMemory",
    "SessionPolicy",
    "StopConditions",
]

DoubleTexting = Literal["reject", "enqueue", "interrupt", "rollback"]
"""What a query for a session that has an unfinished turn does (see :class:`SessionPolicy`)."""
DOUBLE_TEXTING: tuple[str, ...] = typing.get_args(DoubleTexting)


class RetryPolicy(Strict):
    """Retries of a failed step with exponential backoff."""

    max_attempts: int = Field(default=3, ge=1, le=50)
    initial_backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=10.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        delay = self.initial_backoff_s * self.multiplier ** (attempt - 1)
        return float(min(delay, self.max_backoff_s))


class StopConditions(Strict):
    """Extra reasons to end the loop besides a reply without tool calls."""

    on_tools: Names = Field(
        default_factory=list,
        description="stop after one of these tools (by its own name or the model's); "
        "its output is the answer",
    )
    output_matches: Regex | None = Field(
        default=None, description="stop when an assistant reply matches this regex"
    )


class LoopPolicy(Strict):
    """How the reasoning loop runs."""

    max_steps: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="model calls per run (a session summary is one of them)",
    )
    step_timeout_s: float = Field(default=120.0, gt=0, description="per model or tool step")
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="failed model steps; tool steps only when the tool is idempotent",
    )
    stop: StopConditions = Field(default_factory=StopConditions)
    parallel_tool_calls: bool = Field(
        default=True, description="run the tool calls of one model reply concurrently"
    )
    on_truncated: Literal["fail", "continue", "accept"] = Field(
        default="fail",
        description="a reply cut off by the output limit (finish_reason length): fail the run, "
        "ask the model to continue (the parts form one answer), or accept it as it is",
    )


class Budgets(Strict):
    """Limits on what one run may consume. ``None`` means unlimited."""

    max_tokens: int | None = Field(default=None, gt=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    deadline_s: float | None = Field(default=None, gt=0, description="wall time from start")
    max_child_runs: int | None = Field(
        default=100,
        ge=0,
        description="child runs its agent tools may start, their own children included "
        "(each child gets a share of what is left); null: unlimited",
    )
    max_depth: int | None = Field(
        default=5,
        ge=0,
        description="levels of child runs that agent tools may nest below it; null: unlimited",
    )

    def merged(self, override: Budgets | None) -> Budgets:
        """These budgets with every field given (not null) in ``override`` replacing ours."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True, exclude_unset=True))

    def tightened(self, override: Budgets | None) -> Budgets:
        """These budgets with each limit given in ``override`` lowering ours, never
        raising it: the lower of the two (ours unlimited: ``override``'s)."""
        if override is None:
            return self
        given = override.model_dump(exclude_none=True, exclude_unset=True)
        ours = self.model_dump()
        lower = {k: v if ours[k] is None else min(v, ours[k]) for k, v in given.items()}
        return self.model_copy(update=lower)

    def applied(self, override: Budgets | None, *, tighten_only: bool) -> Budgets:
        """``override`` applied to these budgets: :meth:`tightened` or :meth:`merged`."""
        return self.tightened(override) if tighten_only else self.merged(override)


class Hooks(Strict):
    """User hooks, each a ``module:function``, called at one phase of the loop."""

    before_model: str | None = Field(default=None, pattern=CALLABLE)
    after_model: str | None = Field(default=None, pattern=CALLABLE)
    before_tool: str | None = Field(default=None, pattern=CALLABLE)
    after_tool: str | None = Field(default=None, pattern=CALLABLE)
    on_step: str | None = Field(default=None, pattern=CALLABLE)
    on_finish: str | None = Field(default=None, pattern=CALLABLE)


class SessionMemory(Strict):
    """How a session's earlier turns are given to the model when they outgrow a budget."""

    policy: Literal["full", "window", "summary"] = Field(
        default="full",
        description="full: every earlier turn; window: the latest turns that fit `max_tokens`; "
        "summary: older turns folded into a summary made by a model, the latest kept verbatim",
    )
    max_tokens: int | None = Field(
        default=None,
        gt=0,
        description="budget for the earlier turns (estimated at 4 characters a token); "
        "default: half the model's `context_window`",
    )
    keep_turns: int = Field(
        default=2, ge=0, description="summary: the latest turns always kept word for word"
    )
    summary_model: str | None = Field(
        default=None, description="summary: the Model that writes summaries; default: the agent's"
    )
    summary_words: int = Field(default=150, gt=0, description="summary: length asked for")


class Memory(Strict):
    """What an agent remembers beyond one run."""

    session: SessionMemory = Field(default_factory=SessionMemory)


class SessionPolicy(Strict):
    """What a query does when its session has an unfinished turn (queued, running, waiting).

    A session waiting for a person counts as busy: ``reject`` refuses, ``enqueue``
    waits for the person's decision and the turn's end, ``interrupt`` and
    ``rollback`` cancel the waiting turn.
    """

    double_texting: DoubleTexting = Field(
        default="enqueue",
        description="reject: refuse the query (409 over the API), nothing is created; "
        "enqueue: the new turn runs after the unfinished ones, in order; interrupt: cancel "
        "them, keep what they recorded in the session's history, then run the new turn; "
        "rollback: cancel them and drop them from the history, then run the new turn. "
        "A query's own `double_texting` wins",
    )


class Degrade(Strict):
    """When each model step calls only the cheapest Model of its chain: its tenant's
    Budget runs low."""

    when_left_below: float = Field(
        gt=0,
        lt=1,
        description="fraction of a limit of a tenant Budget left (not used, not held) under "
        "which a step calls only the cheapest Model of the agent's model and its fallbacks",
    )


PriorityClass = Literal["low", "normal", "high"]
"""A query's priority class: the scheduler takes a tenant's higher classes first, and
a run rises one class for every minute it waits."""

PRIORITIES: dict[str, int] = {"low": -1, "normal": 0, "high": 1}
"""Each class as the number the store orders by."""


class AgentSpec(Strict):
    """An agent as a workload: model, instructions, tools, loop policy and budgets."""

    model: str = Field(description="name of a Model resource")
    instructions: str = Field(default="", description="the system prompt")
    tools: Names = Field(default_factory=list, description="names of Tool resources")
    loop: LoopPolicy = Field(default_factory=LoopPolicy)
    budgets: Budgets = Field(default_factory=Budgets)
    hooks: Hooks = Field(default_factory=Hooks, description="module:function per loop phase")
    memory: Memory = Field(default_factory=Memory)
    session: SessionPolicy = Field(
        default_factory=SessionPolicy, description="how a session's turns meet"
    )
    degrade: Degrade | None = Field(
        default=None, description="go to the cheapest Model while a tenant Budget runs low"
    )
    routing: Routing | None = Field(
        default=None,
        description="pick each model step's Model by rule (input length, tags, a classifier "
        "hook) or escalate through cost tiers when an answer fails a check; `model` is the "
        "Model when no rule holds",
    )
    priority: PriorityClass = Field(
        default="normal", description="the priority class of its queries (a query may say)"
    )
    max_running: int | None = Field(
        default=None, ge=1, description="its runs running at once, fleet-wide"
    )
