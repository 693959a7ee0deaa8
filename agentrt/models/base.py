"""Provider-neutral types for model calls, and the client protocol.

Messages use the OpenAI Chat Completions shape (``role``/``content``/
``tool_calls``/``tool_call_id``) because every OpenAI-compatible server speaks
it; other providers translate at their edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "RETRY_AFTER_CAP_S",
    "Message",
    "ModelClient",
    "ModelRequest",
    "ModelResponse",
    "ToolCall",
    "ToolDef",
]

Message = dict[str, Any]

RETRY_AFTER_CAP_S = 60.0
"""Longest wait honoured for a provider's ``Retry-After``, by clients and by the loop."""


@dataclass(frozen=True, slots=True)
class ToolDef:
    """A tool as offered to the model."""

    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object

    def to_openai(self) -> dict[str, Any]:
        """The ``tools[]`` entry of a Chat Completions request."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call requested by the model. ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        """The ``tool_calls[]`` entry of an assistant message."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One chat completion request."""

    model: str
    messages: list[Message]
    tools: list[ToolDef] = field(default_factory=list)
    temperature: float | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """One chat completion response, with token usage."""

    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    model: str | None = None

    def assistant_message(self) -> Message:
        """The assistant message to append to the conversation."""
        message: Message = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        return message

    def to_dict(self) -> dict[str, Any]:
        """Compact form for the event log (empty fields omitted)."""
        data: dict[str, Any] = {"in": self.input_tokens, "out": self.output_tokens}
        if self.content is not None:
            data["content"] = self.content
        if self.tool_calls:
            data["calls"] = [[c.id, c.name, c.arguments] for c in self.tool_calls]
        if self.finish_reason:
            data["finish"] = self.finish_reason
        if self.model:
            data["model"] = self.model
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelResponse:
        """Inverse of :meth:`to_dict`."""
        return cls(
            content=data.get("content"),
            tool_calls=[ToolCall(i, n, a) for i, n, a in data.get("calls", ())],
            input_tokens=int(data.get("in", 0)),
            output_tokens=int(data.get("out", 0)),
            finish_reason=data.get("finish"),
            model=data.get("model"),
        )


@runtime_checkable
class ModelClient(Protocol):
    """Something that completes chat requests. Raises ``ModelError`` on failure."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run one completion (with the client's own retries for transient errors)."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...
