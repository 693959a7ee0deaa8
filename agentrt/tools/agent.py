"""The ``agent`` tool kind: another Agent used as a tool, each call a child run.

The child run is submitted with the call's idempotency key, so a parent that
resumes after a crash finds the same child (finished, or resumed) instead of
starting a second one. Its budgets are a share of what the parent has left,
and what it consumes is added to the parent's usage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentrt.errors import ToolError
from agentrt.models.base import ToolDef
from agentrt.spec.resources import Budgets, ToolSpec
from agentrt.state.base import Usage
from agentrt.state.budget_ledger import AccountDraft
from agentrt.tools.base import ToolContext, ToolResult

__all__ = ["AgentToolSet", "ChildOutcome", "ChildRequest", "ChildRunner"]


@dataclass(frozen=True, slots=True)
class ChildRequest:
    """What the engine needs to start (or find) a child run.

    ``idempotency_key`` is the key of the step that asks for the child (an
    agent tool call's, a team node instance's): the same on every attempt.
    A team node retried after its child failed asks for a new child run for
    each ``attempt``; :attr:`run_key` tells them apart.
    """

    agent: str
    input: str
    namespace: str
    parent_run: str
    idempotency_key: str
    budgets: Budgets | None
    kind: str = "Agent"  # or "Team": what ``agent`` names
    attempt: int = 1
    # The budget accounts the child draws on besides its own limits: its parent's
    # (what the parent had left) and those above it (recorded in its first event).
    draws_on: tuple[AccountDraft, ...] = ()
    budget_session: str | None = None  # whose per-session Budgets it draws on: its parent's

    @property
    def run_key(self) -> str:
        """What the child run of this attempt is created with, and found again by."""
        return (
            self.idempotency_key if self.attempt == 1 else f"{self.idempotency_key}#{self.attempt}"
        )


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    """How a child run ended."""

    run_id: str
    status: str
    output: str | None
    reason: str | None
    usage: Usage
    child_runs: int = 0  # the child runs it started in turn, theirs included


ChildRunner = Callable[[ChildRequest], Awaitable[ChildOutcome]]

_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "the request for the agent"}},
    "required": ["input"],
}


def share_of(left: Budgets | None, share: float) -> Budgets | None:
    """``share`` of each remaining budget (None stays unlimited)."""
    if left is None:
        return None
    return Budgets(
        max_tokens=None if left.max_tokens is None else max(1, int(left.max_tokens * share)),
        max_tool_calls=None
        if left.max_tool_calls is None
        else max(0, int(left.max_tool_calls * share)),
        max_cost_usd=None if left.max_cost_usd is None else left.max_cost_usd * share,
        deadline_s=left.deadline_s,
        max_child_runs=None if left.max_child_runs is None else int(left.max_child_runs * share),
        max_depth=left.max_depth,
    )


class AgentToolSet:
    """A Tool of kind ``agent``: calls run the named Agent as a child run."""

    dynamic = False

    def __init__(self, name: str, spec: ToolSpec, runner: ChildRunner) -> None:
        if spec.agent is None:
            raise ToolError(f"Tool {name}: kind 'agent' needs an `agent:` section")
        self.name = name
        self.spec = spec
        self._target = spec.agent
        self._runner = runner
        self._definition = ToolDef(
            name, spec.description or f"Ask the {spec.agent.agent!r} agent.", _SCHEMA
        )

    async def definitions(self) -> list[ToolDef]:
        """The one tool: ``{input: string}``."""
        return [self._definition]

    async def call(self, tool: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run the child to its end and answer with its output."""
        text = arguments.get("input")
        if not isinstance(text, str):
            raise ToolError(f"{self.name} needs `input`: a string")
        outcome = await self._runner(
            ChildRequest(
                agent=self._target.agent,
                input=text,
                namespace=ctx.namespace,
                parent_run=ctx.run_id,
                idempotency_key=ctx.idempotency_key,
                budgets=share_of(ctx.budget_left, self._target.budget_share),
                draws_on=ctx.draws_on,
                budget_session=ctx.budget_session,
            )
        )
        u = outcome.usage
        trace: dict[str, Any] = {
            "child_run": outcome.run_id,
            "status": outcome.status,
            "usage": [u.input_tokens, u.output_tokens, u.cost_usd, u.model_calls, u.tool_calls],
        }
        if outcome.child_runs:
            trace["child_runs"] = outcome.child_runs  # counted against the parent's budget
        if outcome.status != "succeeded":
            message = f"agent {self._target.agent!r} ended {outcome.status}: {outcome.reason}"
            return ToolResult(message, is_error=True, trace=trace)
        return ToolResult(outcome.output or "", trace=trace)

    async def lookup(self, tool: str, ctx: ToolContext) -> ToolResult | None:
        """Not needed: a repeated call finds the same child run by its key."""
        return None

    async def close(self) -> None:
        """Nothing to release."""
