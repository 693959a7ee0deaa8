"""OpenAIClient.stream against a real ModelTestServer over HTTP: the reply in pieces as
it is written, the same whole reply as ``complete`` gives, and the same retries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from agentrt.errors import ModelError
from agentrt.models import (
    ModelDelta,
    ModelTestServer,
    OpenAIClient,
    StreamingModelClient,
)
from agentrt.models import openai as openai_module
from tests.models.test_openai import RULES, WEATHER, request


@pytest.fixture
async def server() -> AsyncIterator[ModelTestServer]:
    async with ModelTestServer(RULES) as srv:
        yield srv


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client's retry delays instead of waiting them out."""
    recorded: list[float] = []

    async def fake_sleep(delay: float) -> None:
        recorded.append(delay)

    monkeypatch.setattr(openai_module, "_sleep", fake_sleep)
    return recorded


@pytest.fixture
async def client(server: ModelTestServer) -> AsyncIterator[OpenAIClient]:
    async with OpenAIClient(base_url=server.url, model="test-model", max_retries=2) as c:
        yield c


async def test_a_streamed_reply_comes_in_pieces_and_whole_as_complete_gives_it(
    server: ModelTestServer, client: OpenAIClient
) -> None:
    pieces: list[ModelDelta] = []
    streamed = await client.stream(request("hello there, how are you"), pieces.append)
    whole = await client.complete(request("hello there, how are you"))
    assert streamed == whole
    assert streamed.content == "You said: hello there, how are you"
    assert len(pieces) == 7 and "".join(p.text for p in pieces) == streamed.content
    assert {p.attempt for p in pieces} == {1} and not any(p.tool_calls for p in pieces)
    assert isinstance(client, StreamingModelClient)
    body = server.requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["_headers"]["accept"] == "text/event-stream"
    assert "stream" not in server.requests[1]  # complete() asks for a whole reply


async def test_streamed_tool_calls_come_in_fragments(
    server: ModelTestServer, client: OpenAIClient
) -> None:
    pieces: list[ModelDelta] = []
    streamed = await client.stream(request("weather in Oslo", tools=[WEATHER]), pieces.append)
    assert streamed == await client.complete(request("weather in Oslo", tools=[WEATHER]))
    [call] = streamed.tool_calls
    assert orjson.loads(call.arguments) == {"city": "weather in Oslo"}
    assert streamed.content is None and streamed.finish_reason == "tool_calls"
    fragments = [f for p in pieces for f in p.tool_calls]
    assert fragments[0] == {"index": 0, "id": call.id, "name": "get_weather"}
    assert len(fragments) > 2 and {f["index"] for f in fragments} == {0}
    assert "".join(f.get("arguments", "") for f in fragments) == call.arguments


async def test_a_stream_cut_off_is_retried_and_its_pieces_say_so(
    server: ModelTestServer, client: OpenAIClient, sleeps: list[float]
) -> None:
    server.inject_reply(cut_after=3)
    pieces: list[ModelDelta] = []
    response = await client.stream(request("one two three four"), pieces.append)
    assert response.content == "You said: one two three four"
    assert [p.text for p in pieces if p.attempt == 1] == ["You ", "said: "]
    assert "".join(p.text for p in pieces if p.attempt == 2) == response.content
    assert len(sleeps) == 1 and len(server.requests) == 2


async def test_a_stream_cut_off_past_the_retries_is_a_retryable_error(
    server: ModelTestServer, sleeps: list[float]
) -> None:
    server.inject_reply(cut_after=2)
    async with OpenAIClient(base_url=server.url, model="m", max_retries=0) as client:
        with pytest.raises(ModelError) as caught:
            await client.stream(request("hi"), lambda _: None)
    assert caught.value.retryable
    assert "failed" in str(caught.value)


async def test_error_statuses_are_treated_as_for_whole_replies(
    server: ModelTestServer, client: OpenAIClient, sleeps: list[float]
) -> None:
    server.inject(503)
    response = await client.stream(request("hi"), lambda _: None)
    assert response.content == "You said: hi" and len(sleeps) == 1
    server.inject(400, body='{"error": {"message": "no such model"}}')
    with pytest.raises(ModelError) as caught:
        await client.stream(request("hi"), lambda _: None)
    assert not caught.value.retryable and caught.value.status == 400
    assert "no such model" in str(caught.value)


async def test_a_server_that_answers_whole_is_read_whole(
    server: ModelTestServer, client: OpenAIClient
) -> None:
    completion = {
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2},
    }  # fmt: skip
    server.inject(200, body=orjson.dumps(completion).decode())
    pieces: list[ModelDelta] = []
    response = await client.stream(request("hi"), pieces.append)
    assert (response.content, response.input_tokens, response.output_tokens) == ("whole", 4, 2)
    assert pieces == []


async def test_a_stream_without_usage_is_counted_as_the_provider_counts(
    server: ModelTestServer, client: OpenAIClient
) -> None:
    whole = await client.complete(request("count me in, please"))
    server.inject_reply(usage={})  # a server that sends no usage at the end
    streamed = await client.stream(request("count me in, please"), lambda _: None)
    assert (streamed.input_tokens, streamed.output_tokens) == (
        whole.input_tokens,
        whole.output_tokens,
    )
    assert streamed.output_tokens > 0
