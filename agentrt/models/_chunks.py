"""The Chat Completions stream (``stream: true``): reading one into a reply, and writing one.

A streamed completion is server-sent events whose ``data`` is a
``chat.completion.chunk`` each, then ``data: [DONE]``. A chunk's
``choices[0].delta`` holds a piece of the reply: some ``content`` text, or
fragments of tool calls (a call's ``id`` and ``name`` in its first fragment,
its ``arguments`` in pieces, each fragment naming the call by ``index``). With
``stream_options: {include_usage: true}`` a last chunk without choices carries
the ``usage``. :class:`ChunkReader` turns such a stream into the pieces a
listener sees and the whole reply; :func:`stream_events` writes one from a
whole reply (the test server's streaming answer).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any

from agentrt._json import dumps, loads
from agentrt._text import count
from agentrt.errors import ModelError
from agentrt.models.base import Message, ModelDelta, ModelResponse, ToolCall
from agentrt.models.tokens import estimate_tokens, tokens_of_chars

__all__ = [
    "MAX_EVENT_BYTES",
    "ChunkReader",
    "cached_tokens",
    "completion_chunks",
    "sse_data",
    "stream_events",
]

MAX_EVENT_BYTES = 16 << 20
"""An event longer than this is a broken stream, not a reply (its memory is bounded)."""

_DONE = b"[DONE]"
_PIECE = re.compile(r"\S+\s*|\s+")  # words with the space after them: the text, cut up
_ARGUMENT_PIECE = 12  # characters of a tool call's arguments per chunk written


async def sse_data(body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The ``data`` of each server-sent event in ``body`` (bytes as they arrive).

    Lines may end in LF or CRLF; several ``data`` lines of one event are joined
    with LF; comments and other fields are skipped. Unlike a browser, an event
    the body ends in (no blank line, or no line end, after it) still counts:
    some servers end on ``data: [DONE]`` alone.
    """
    pending = bytearray()
    data: list[bytes] = []
    searched = 0  # bytes of pending known to hold no line end: a long line is scanned once
    async for chunk in body:
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", max(start, searched))) >= 0:
            line = bytes(pending[start:end]).rstrip(b"\r")
            start = end + 1
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
        del pending[:start]
        searched = len(pending)
        if searched + sum(len(d) for d in data) > MAX_EVENT_BYTES:
            raise ModelError(
                f"model endpoint streamed an event over {count(MAX_EVENT_BYTES, 'byte')}"
            )
    tail = bytes(pending).rstrip(b"\r")
    if tail.startswith(b"data:"):
        data.append(tail[6:] if tail.startswith(b"data: ") else tail[5:])
    if data:
        yield b"\n".join(data)


class ChunkReader:
    """The reply of one streamed attempt, put together chunk by chunk."""

    def __init__(self, attempt: int = 1) -> None:
        """A reader for HTTP attempt ``attempt`` (1-based; it goes into each delta)."""
        self.attempt = attempt
        self.done = False  # ``[DONE]`` was read
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._model: str | None = None

    def add(self, data: bytes) -> ModelDelta | None:
        """Read one event's data; the piece of the reply it holds, if any.

        Raises:
            ModelError: the event is not a chunk, or the server streamed an error
                (retryable: the stream broke off, another attempt may not).
        """
        if data == _DONE:
            self.done = True
            return None
        try:
            chunk = loads(data)
        except ValueError:
            chunk = None
        if isinstance(chunk, dict) and chunk.get("error"):
            raise ModelError(f"model endpoint streamed an error: {chunk['error']}", retryable=True)
        try:
            if not isinstance(chunk, dict):
                raise TypeError("a chunk is a JSON object")
            self._model = chunk.get("model") or self._model
            if chunk.get("usage"):
                self._usage = chunk["usage"]
            choices = chunk.get("choices") or ()
            return self._delta(choices[0]) if choices else None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            snippet = data[:200].decode("utf-8", "replace")
            raise ModelError(
                f"model endpoint streamed a malformed chunk ({type(exc).__name__}: {exc}): "
                f"{snippet!r}"
            ) from exc

    def _delta(self, choice: dict[str, Any]) -> ModelDelta | None:
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        if text:
            self._text.append(text)
        fragments = []
        for call in delta.get("tool_calls") or ():
            index = int(call.get("index", 0))
            function = call.get("function") or {}
            fragment: dict[str, Any] = {"index": index}
            entry = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            # As OpenAI's own client does: every string field of a fragment is appended.
            for key, value in (("id", call.get("id")), ("name", function.get("name")),
                               ("arguments", function.get("arguments"))):  # fmt: skip
                if isinstance(value, str) and value:
                    entry[key] += value
                    fragment[key] = value
            fragments.append(fragment)
        if not text and not fragments:
            return None
        return ModelDelta(text, tuple(fragments), self.attempt)

    def response(self, messages: list[Message]) -> ModelResponse:
        """The whole reply. A server that sent no usage is counted by estimate, as the
        scripted provider counts (see :mod:`agentrt.models.tokens`)."""
        text = "".join(self._text)
        calls = [
            ToolCall(c["id"], c["name"], c["arguments"] or "{}")
            for _, c in sorted(self._calls.items())
        ]
        usage = self._usage or {}
        cached = cached_tokens(usage)
        if "prompt_tokens" in usage or "completion_tokens" in usage:
            tokens_in = int(usage.get("prompt_tokens") or 0)
            tokens_out = int(usage.get("completion_tokens") or 0)
        else:
            tokens_in = estimate_tokens(messages)
            tokens_out = tokens_of_chars(len(text) + sum(len(c.arguments) for c in calls))
        return ModelResponse(
            content=text if text or not calls else None,
            tool_calls=calls,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            finish_reason=self._finish,
            model=self._model,
            cached_tokens=cached,
        )


def cached_tokens(usage: Any) -> int:
    """The prompt tokens a provider's prefix cache served, as OpenAI reports them
    (``usage.prompt_tokens_details.cached_tokens``); 0 when it says nothing."""
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def completion_chunks(
    completion: dict[str, Any], *, include_usage: bool
) -> Iterator[dict[str, Any]]:
    """The chunks that stream ``completion`` (a whole ``chat.completion`` object):
    its role, its text a word at a time, each tool call's arguments in pieces, its
    finish reason, then (with ``include_usage``) its usage in a chunk of its own."""
    head = {key: completion[key] for key in ("id", "created", "model")}
    head["object"] = "chat.completion.chunk"
    choice = completion["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if include_usage:
            out["usage"] = None  # as OpenAI does: only the last chunk has it
        return out

    yield chunk({"role": "assistant", "content": ""})
    for piece in _PIECE.findall(message.get("content") or ""):
        yield chunk({"content": piece})
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        first = {"index": index, "id": call["id"], "type": "function",
                 "function": {"name": function["name"], "arguments": ""}}  # fmt: skip
        yield chunk({"tool_calls": [first]})
        arguments = function.get("arguments") or ""
        for at in range(0, len(arguments), _ARGUMENT_PIECE):
            piece = arguments[at : at + _ARGUMENT_PIECE]
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, choice.get("finish_reason"))
    if include_usage:
        yield {**head, "choices": [], "usage": completion.get("usage")}


def stream_events(completion: dict[str, Any], *, include_usage: bool) -> Iterator[bytes]:
    """The server-sent events that stream ``completion``: each of its chunks, then
    ``[DONE]``."""
    for chunk in completion_chunks(completion, include_usage=include_usage):
        yield b"data: " + dumps(chunk) + b"\n\n"
    yield b"data: " + _DONE + b"\n\n"
