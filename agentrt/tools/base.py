"""What every tool kind provides to the engine, and what a tool call receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agentrt.models.base import ToolDef
from agentrt.spec.resources import Budgets, ToolSpec
from agentrt.state.budget_ledger import AccountDraft
from agentrt.tools.keys import StepKey

__all__ = ["ToolContext", "ToolResult", "ToolSet", "Withholding"]


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool call knows about where it runs.

    ``idempotency_key`` is stable across retries and resumes of the same call:
    use it to make external effects happen once. It is ``str(key)``: a loop
    tool call's ``run:step:call`` unless ``key`` names another step (a team
    node instance, see :class:`~agentrt.tools.keys.StepKey`). ``scratch`` is
    the run's scratch directory (files in and out of sandboxes).
    """

    run_id: str
    step: int
    call_id: str
    namespace: str
    session_id: str | None
    attempt: int = 1
    scratch: Path | None = None
    budget_left: Budgets | None = None  # what the run may still consume (agent tools share it)
    key: StepKey | None = None  # the step's key when it is not this loop call's own
    # The budget accounts a child run this call starts draws on (its run's turn's, and
    # those above): children together never spend more than the run had left.
    draws_on: tuple[AccountDraft, ...] = ()
    budget_session: str | None = None  # the session whose per-session Budgets it draws on

    @property
    def step_key(self) -> StepKey:
        """The key of the step this call belongs to."""
        return self.key or StepKey.tool_call(self.run_id, self.step, self.call_id)

    @property
    def idempotency_key(self) -> str:
        """The step's key as text — the same on every retry and resume of this call."""
        return str(self.step_key)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's answer as the model will see it, and the trace of how it ran.

    ``trace`` holds what the tool kind can report: stderr, exit status,
    sandbox backend and id, resource use, the artifact with the full output.
    It is recorded in the event log, not shown to the model.
    """

    output: str
    is_error: bool = False
    trace: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Compact form for the event log."""
        data: dict[str, Any] = {"output": self.output}
        if self.is_error:
            data["error"] = True
        if self.trace:
            data["trace"] = self.trace
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(data.get("output", "")), bool(data.get("error", False)), data.get("trace") or {}
        )


@runtime_checkable
class ToolSet(Protocol):
    """The tools one Tool resource offers: one for most kinds, many for an MCP server.

    ``definitions`` may change between calls (an MCP server can add tools while
    the runtime runs); the engine asks for them before every model call.
    """

    name: str  # the Tool resource's name
    spec: ToolSpec
    dynamic: bool  # True when definitions() does I/O and may change (MCP)

    async def definitions(self) -> list[ToolDef]:
        """The tools offered to the model now."""
        ...

    async def call(self, tool: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Perform a call of ``tool``. Raise ``ToolError`` for a failure the model should see."""
        ...

    async def lookup(self, tool: str, ctx: ToolContext) -> ToolResult | None:
        """After a crash: the result of the call with ``ctx.idempotency_key``, if it happened."""
        ...

    async def close(self) -> None:
        """Release what the tool set holds (server processes, connections)."""
        ...


@runtime_checkable
class Withholding(Protocol):
    """A tool set that may know of tools it cannot offer (an MCP server's task-only tools).

    The engine reports each one in the run (a notice recorded with the model
    step, shown by the CLI), once per run.
    """

    def withheld(self) -> dict[str, str]:
        """Tools of the last ``definitions()`` left out, with why: ``{tool: reason}``."""
        ...
