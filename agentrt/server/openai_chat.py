"""OpenAI's Chat Completions shapes, as agentrt speaks them: the request a client
sends, the run input made of its messages, and the completion, chunk and model
objects sent back.

The shapes follow OpenAI's API reference and what its official client parses:
a ``chat.completion`` with one choice, ``chat.completion.chunk`` objects with
``usage`` null on each but the last when ``stream_options.include_usage`` is
set (that one has no choices), and ``model`` objects for ``GET /v1/models``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentrt.server.problems import ApiError
from agentrt.state.records import ResourceRecord, Usage

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "StreamOptions",
    "chunk",
    "completion",
    "model_object",
    "run_input",
    "usage_object",
]


class ChatMessage(BaseModel):
    """One message of the conversation a client sends."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None


class StreamOptions(BaseModel):
    """What a stream carries besides the answer."""

    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(default=False, description="a last chunk with the run's usage")
    include_obfuscation: bool | None = Field(
        default=None, description="accepted; chunks carry no padding"
    )


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: an Agent or Team of the tenant as the model.

    Sampling and length parameters are accepted, so that clients that always
    send them work, and left to the Agent's Model, which decides them. A
    request cannot bring its own tools: the Agent calls its own Tools.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        min_length=1, max_length=300, description="agent/NAME, team/NAME, or NAME (an Agent, "
        "else a Team)",
    )  # fmt: skip
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(
        default=None, max_length=256, description="an end user: their own session per model"
    )
    n: int | None = Field(default=None, ge=1, le=1, description="one choice only")
    tools: list[dict[str, Any]] | None = Field(
        default=None,
        description="none: the Agent calls its own Tools",
        json_schema_extra={"maxItems": 0},
    )
    tool_choice: Literal["auto", "none"] | None = Field(
        default=None, description="the Agent decides its tool calls"
    )
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None

    def refuse_client_tools(self) -> None:
        """A 400 for tools the request brings: the Agent's own are the ones it calls."""
        if self.tools:
            raise ApiError(
                400, "a request cannot add tools: the Agent calls its own Tools "
                "(define a Tool resource and list it in the Agent's spec.tools)", param="tools",
            )  # fmt: skip


def _text(message: ChatMessage, index: int) -> str:
    """A message's text: its string, or its text parts joined."""
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ApiError(
                400, f"messages[{index}].content: only text parts are understood, not "
                f"{part.get('type')!r}", param=f"messages[{index}].content",
            )  # fmt: skip
        texts.append(part["text"])
    return "".join(texts)


def run_input(messages: list[ChatMessage], *, context: bool) -> str:
    """The run's input: the last message (the user's), after the earlier messages
    as the conversation so far when ``context`` (no session remembers them)."""
    last = len(messages) - 1
    if messages[last].role != "user":
        raise ApiError(
            400, f"the last message is the user's to answer, not the {messages[last].role}'s",
            param=f"messages[{last}].role",
        )  # fmt: skip
    text = _text(messages[last], last)
    earlier = [(m.role, _text(m, i)) for i, m in enumerate(messages[:last])] if context else []
    lines = [f"{role}: {said}" for role, said in earlier if said]
    if not lines:
        return text
    return "The conversation so far:\n\n" + "\n\n".join(lines) + "\n\nThe user now says:\n\n" + text


def usage_object(usage: Usage) -> dict[str, int]:
    """A run's usage as OpenAI's ``usage``: its model calls' tokens, children's included."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion(
    run_id: str, created: float, model: str, output: str, usage: Usage
) -> dict[str, Any]:
    """A ``chat.completion`` whose id is the run's and whose message is its answer."""
    return {
        "id": run_id,
        "object": "chat.completion",
        "created": int(created),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": output, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage_object(usage),
    }


def chunk(
    run_id: str,
    created: float,
    model: str,
    *,
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: Usage | None = None,
    with_usage: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``: a delta (or the end, ``finish``) of the one
    choice, or, given ``usage``, the last chunk with no choices."""
    body: dict[str, Any] = {
        "id": run_id,
        "object": "chat.completion.chunk",
        "created": int(created),
        "model": model,
        "choices": []
        if usage is not None
        else [{"index": 0, "delta": delta or {}, "finish_reason": finish, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage_object(usage)
    elif with_usage:
        body["usage"] = None  # every chunk but the last, when the last carries usage
    return body


def model_object(record: ResourceRecord) -> dict[str, Any]:
    """An Agent or Team as an OpenAI ``model``: ``agent/NAME`` or ``team/NAME``."""
    return {
        "id": f"{record.kind.lower()}/{record.name}",
        "object": "model",
        "created": int(record.created_at),
        "owned_by": record.namespace,
    }
