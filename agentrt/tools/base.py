"""What every tool kind provides to the engine, and what a tool receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agentrt.models.base import ToolDef
from agentrt.spec.resources import ToolSpec

__all__ = ["RuntimeTool", "ToolContext", "ToolResult"]


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool call knows about where it runs.

    ``idempotency_key`` is stable across retries and resumes of the same call
    (run id + step + tool call id): use it to make external effects happen once.
    """

    run_id: str
    step: int
    call_id: str
    namespace: str
    session_id: str | None
    attempt: int = 1

    @property
    def idempotency_key(self) -> str:
        """``run:step:call`` — the same on every retry and resume of this call."""
        return f"{self.run_id}:{self.step}:{self.call_id}"


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's answer as the model will see it."""

    output: str
    is_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Compact form for the event log."""
        return {"output": self.output, "error": True} if self.is_error else {"output": self.output}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolResult:
        """Inverse of :meth:`to_dict`."""
        return cls(str(data.get("output", "")), bool(data.get("error", False)))


@runtime_checkable
class RuntimeTool(Protocol):
    """A tool ready to be called by the engine."""

    name: str
    spec: ToolSpec

    @property
    def definition(self) -> ToolDef:
        """How the tool is offered to the model."""
        ...

    async def call(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Perform the call. Raise ``ToolError`` for a failure the model should see."""
        ...

    async def lookup(self, ctx: ToolContext) -> ToolResult | None:
        """After a crash: the result of the call with ``ctx.idempotency_key``, if it happened."""
        ...
