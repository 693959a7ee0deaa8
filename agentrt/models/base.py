"""Provider-neutral types for model calls, and the client protocol.

Messages use the OpenAI Chat Completions shape (``role``/``content``/
``tool_calls``/``tool_call_id``) because every OpenAI-compatible server speaks
it; other providers translate at their edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentrt._retry import RETRY_AFTER_CAP_S  # the loop honours the same cap as the clients
from agentrt.errors import ModelError

__all__ = [
    "MAX_TOKENS_PER_CALL",
    "RETRY_AFTER_CAP_S",
    "Message",
    "ModelClient",
    "ModelDelta",
    "ModelRequest",
    "ModelResponse",
    "StreamingModelClient",
    "ToolCall",
    "ToolDef",
    "check_usage",
]

Message = dict[str, Any]

MAX_TOKENS_PER_CALL = 100_000_000
"""More prompt or output tokens than this in one call is a server's error, not usage."""


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
    cached_tokens: int = 0  # of input_tokens, those the provider's prefix cache served

    def assistant_message(self) -> Message:
        """The assistant message to append to the conversation."""
        message: Message = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        return message

    def to_dict(self) -> dict[str, Any]:
        """Compact form for the event log (empty fields omitted)."""
        data: dict[str, Any] = {"in": self.input_tokens, "out": self.output_tokens}
        if self.cached_tokens:
            data["cached"] = self.cached_tokens
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
            cached_tokens=int(data.get("cached", 0)),
        )


@dataclass(frozen=True, slots=True)
class ModelDelta:
    """A piece of a reply as a streaming client receives it, before the reply is whole.

    ``tool_calls`` holds fragments in the shape of the Chat Completions stream
    (``{"index", "id"?, "name"?, "arguments"?}``): a call's ``id`` and ``name``
    come with its first fragment, its ``arguments`` text in pieces. ``attempt``
    is the client's HTTP attempt (1-based): when it changes, the text of the
    attempt before was cut off and is not part of the reply.
    """

    text: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()
    attempt: int = 1


@runtime_checkable
class ModelClient(Protocol):
    """Something that completes chat requests. Raises ``ModelError`` on failure."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run one completion (with the client's own retries for transient errors)."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


@runtime_checkable
class StreamingModelClient(ModelClient, Protocol):
    """A client that can also stream a reply, telling each piece as it arrives."""

    async def stream(
        self, request: ModelRequest, on_delta: Callable[[ModelDelta], None]
    ) -> ModelResponse:
        """Run one completion as :meth:`complete` does, calling ``on_delta`` with each
        piece of the reply as it arrives; the whole reply is returned at its end."""
        ...


def check_usage(response: ModelResponse, *, model: str) -> ModelResponse:
    """``response`` when its token usage is possible; else a non-retryable ``ModelError``.

    Usage drives budgets and cost accounting: a negative or absurd count (a broken
    proxy, an overflow) would make them meaningless, so whatever the provider such a
    reply is refused like a malformed one (the loop then tries the next fallback).
    """
    wrong = [
        f"{name}={value!r}"
        for name, value in (
            ("input_tokens", response.input_tokens),
            ("output_tokens", response.output_tokens),
            ("cached_tokens", response.cached_tokens),
        )
        if isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 <= value <= MAX_TOKENS_PER_CALL
    ]
    if not wrong and response.cached_tokens > response.input_tokens:
        wrong.append(f"cached_tokens={response.cached_tokens!r} > input_tokens")
    if wrong:
        raise ModelError(
            f"model {model!r} reported impossible usage ({', '.join(wrong)}); a reply whose "
            f"tokens cannot be counted is refused (each count must be 0..{MAX_TOKENS_PER_CALL:,})"
        )
    return response
