"""The Chat Completions stream format: server-sent events split however the network
splits them, and chunks put together into the reply they stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from agentrt.errors import ModelError
from agentrt.models._chunks import ChunkReader, completion_chunks, sse_data, stream_events


async def _pieces(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _data(parts: list[bytes]) -> list[bytes]:
    return [d async for d in sse_data(_pieces(parts))]


async def test_events_are_found_however_the_bytes_are_cut() -> None:
    text = b': a comment\r\ndata: {"a": 1}\r\n\r\nevent: x\ndata: one\ndata:two\n\ndata: [DONE]\n\n'
    whole = await _data([text])
    assert whole == [b'{"a": 1}', b"one\ntwo", b"[DONE]"]
    assert await _data([bytes([b]) for b in text]) == whole  # a byte at a time
    assert await _data([text[:7], text[7:40], text[40:]]) == whole
    assert await _data([b"data: unterminated"]) == [b"unterminated"]


async def test_an_endless_line_is_refused() -> None:
    with pytest.raises(ModelError, match="over"):
        await _data([b"data: " + b"x" * (1 << 20)] * 17)


def test_the_chunks_of_a_reply_make_the_reply_again() -> None:
    completion = {
        "id": "c1", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "let me see",
            "tool_calls": [
                {"id": "a", "type": "function",
                 "function": {"name": "f", "arguments": '{"x": "a long value"}'}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }  # fmt: skip
    reader = ChunkReader(attempt=2)
    pieces = []
    for event in stream_events(completion, include_usage=True):
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        piece = reader.add(event[6:-2])
        if piece is not None:
            pieces.append(piece)
    assert reader.done
    response = reader.response([{"role": "user", "content": "?"}])
    assert response.content == "let me see" and response.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("a", "f", '{"x": "a long value"}'),
        ("b", "g", "{}"),
    ]
    assert (response.input_tokens, response.output_tokens, response.model) == (9, 4, "m")
    assert "".join(p.text for p in pieces) == "let me see"
    assert {p.attempt for p in pieces} == {2}
    chunks = list(completion_chunks(completion, include_usage=False))
    assert all("usage" not in c for c in chunks)


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"choices": [{"delta": 5}]}'])
def test_a_malformed_chunk_is_a_model_error(data: bytes) -> None:
    with pytest.raises(ModelError, match="malformed chunk") as caught:
        ChunkReader().add(data)
    assert not caught.value.retryable


def test_an_error_streamed_midway_may_be_retried() -> None:
    with pytest.raises(ModelError, match="overloaded") as caught:
        ChunkReader().add(orjson.dumps({"error": {"message": "overloaded"}}))
    assert caught.value.retryable
