"""OpenAIClient against a real ModelTestServer over HTTP (no mocked transport)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from agentrt.errors import ModelError
from agentrt.models import (
    ModelClient,
    ModelRequest,
    ModelTestServer,
    OpenAIClient,
    ToolDef,
    create_client,
)
from agentrt.models import openai as openai_module
from agentrt.spec.resources import ModelSpec, ScriptedRule

RULES = [
    ScriptedRule.model_validate(
        {
            "match": "weather",
            "steps": [
                {"tool_calls": [{"name": "get_weather", "arguments": {"city": "{input}"}}]},
                {"content": "Forecast: {last_tool_result}"},
            ],
        }
    )
]
WEATHER = ToolDef(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def request(
    text: str = "hello",
    *,
    tools: list[ToolDef] | None = None,
    temperature: float | None = None,
    max_output_tokens: int | None = None,
) -> ModelRequest:
    return ModelRequest(
        model="ignored",
        messages=[{"role": "user", "content": text}],
        tools=tools or [],
        temperature=temperature,
        max_output_tokens=max_output_tokens,
    )


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
    async with OpenAIClient(base_url=server.url, model="test-model", api_key="sk-test") as c:
        yield c


async def test_plain_completion(server: ModelTestServer, client: OpenAIClient) -> None:
    response = await client.complete(request("hello there"))
    assert response.content == "You said: hello there"
    assert response.tool_calls == []
    assert response.finish_reason == "stop"
    assert response.model == "test-model"
    assert response.input_tokens == 3  # ceil(11 / 4)
    assert response.output_tokens == 6  # ceil(21 / 4)
    assert isinstance(client, ModelClient)

    body = server.requests[0]
    assert body["model"] == "test-model"
    assert body["messages"] == [{"role": "user", "content": "hello there"}]
    assert "tools" not in body
    assert "temperature" not in body
    assert "max_tokens" not in body
    assert body["_status"] == 200
    assert server.completions_served == 1


async def test_tool_calls_are_parsed(server: ModelTestServer, client: OpenAIClient) -> None:
    response = await client.complete(
        request("weather in Oslo", tools=[WEATHER], temperature=0.2, max_output_tokens=50)
    )
    assert response.content is None
    assert response.finish_reason == "tool_calls"
    [call] = response.tool_calls
    assert (call.id, call.name) == ("call_0_0", "get_weather")
    assert orjson.loads(call.arguments) == {"city": "weather in Oslo"}
    assert response.input_tokens > 0 and response.output_tokens > 0

    body = server.requests[0]
    assert body["tools"] == [WEATHER.to_openai()]
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 50

    followup = ModelRequest(
        model="ignored",
        messages=[
            {"role": "user", "content": "weather in Oslo"},
            response.assistant_message(),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert (await client.complete(followup)).content == "Forecast: sunny"


async def test_429_with_retry_after_is_retried_after_the_wait(
    server: ModelTestServer, sleeps: list[float]
) -> None:
    server.inject(429, retry_after=1.5)
    async with OpenAIClient(base_url=server.url, model="m", backoff_initial_s=0.01) as client:
        response = await client.complete(request())
    assert response.content == "You said: hello"
    assert sleeps == [1.5]  # the server's Retry-After, not the 0.01 s backoff
    log = server.requests
    assert [entry["_status"] for entry in log] == [429, 200]
    assert log[0].get("_injected") is True
    assert server.completions_served == 1


async def test_retry_after_is_capped(server: ModelTestServer, sleeps: list[float]) -> None:
    server.inject(429, retry_after=3600)
    async with OpenAIClient(base_url=server.url, model="m") as client:
        await client.complete(request())
    assert sleeps == [openai_module.RETRY_AFTER_CAP_S]


async def test_503_is_retried_with_backoff_then_succeeds(
    server: ModelTestServer, sleeps: list[float]
) -> None:
    server.inject(503, count=2)
    async with OpenAIClient(
        base_url=server.url, model="m", backoff_initial_s=0.4, backoff_max_s=0.5
    ) as client:
        response = await client.complete(request())
    assert response.content == "You said: hello"
    assert [entry["_status"] for entry in server.requests] == [503, 503, 200]
    # Exponential with jitter: each delay lies in [ceiling / 2, ceiling].
    assert len(sleeps) == 2
    assert 0.2 <= sleeps[0] <= 0.4
    assert 0.25 <= sleeps[1] <= 0.5


async def test_exhausted_retries_raise_a_retryable_error(
    server: ModelTestServer, sleeps: list[float]
) -> None:
    server.inject(429, count=10, retry_after=2)
    async with OpenAIClient(base_url=server.url, model="m", max_retries=2) as client:
        with pytest.raises(ModelError) as info:
            await client.complete(request())
    error = info.value
    assert error.retryable is True
    assert error.status == 429
    assert error.retry_after == 2
    assert "429" in error.message and "3 attempts" in error.message
    assert len(server.requests) == 3
    assert sleeps == [2, 2]
    assert server.completions_served == 0


async def test_400_is_not_retried_and_carries_the_server_message(
    server: ModelTestServer, sleeps: list[float]
) -> None:
    server.inject(400, body='{"error": {"message": "context length exceeded"}}')
    async with OpenAIClient(base_url=server.url, model="m") as client:
        with pytest.raises(ModelError) as info:
            await client.complete(request())
    assert info.value.retryable is False
    assert info.value.status == 400
    assert "context length exceeded" in info.value.message
    assert len(server.requests) == 1
    assert sleeps == []


async def test_non_json_error_body_is_included(server: ModelTestServer) -> None:
    server.inject(401, body="<html>no key</html>")
    async with OpenAIClient(base_url=server.url, model="m") as client:
        with pytest.raises(ModelError, match="no key") as info:
            await client.complete(request())
    assert (info.value.status, info.value.retryable) == (401, False)


@pytest.mark.parametrize(
    "body",
    ["not json", '{"choices": []}', '{"id": "x"}', '{"choices": [{"message": null}]}'],
)
async def test_malformed_completion_raises(server: ModelTestServer, body: str) -> None:
    server.inject(200, body=body)
    async with OpenAIClient(base_url=server.url, model="m") as client:
        with pytest.raises(ModelError, match="malformed") as info:
            await client.complete(request())
    assert info.value.retryable is False
    assert len(server.requests) == 1


async def test_timeout_is_retried(server: ModelTestServer, sleeps: list[float]) -> None:
    server.inject_delay(30)
    async with OpenAIClient(base_url=server.url, model="m", timeout_s=0.2) as client:
        response = await client.complete(request())
    assert response.content == "You said: hello"
    assert len(server.requests) == 2
    assert server.requests[1]["_status"] == 200
    assert len(sleeps) == 1


async def test_timeout_after_retries_raises(server: ModelTestServer, sleeps: list[float]) -> None:
    server.inject_delay(30, count=2)
    async with OpenAIClient(base_url=server.url, model="m", timeout_s=0.2, max_retries=1) as client:
        with pytest.raises(ModelError, match="timed out") as info:
            await client.complete(request())
    assert info.value.retryable is True
    assert info.value.status is None
    assert len(server.requests) == 2


async def test_connection_refused_is_retryable(sleeps: list[float]) -> None:
    server = ModelTestServer()
    url = await server.start()
    await server.stop()  # nothing listens on this port any more
    async with OpenAIClient(base_url=url, model="m", max_retries=2) as client:
        with pytest.raises(ModelError) as info:
            await client.complete(request())
    assert info.value.retryable is True
    assert len(sleeps) == 2


async def test_injected_session_is_used_and_left_open(server: ModelTestServer) -> None:
    async with aiohttp.ClientSession() as session:
        client = OpenAIClient(base_url=server.url + "/", model="m", session=session)
        assert (await client.complete(request())).content == "You said: hello"
        await client.close()
        await client.close()
        assert not session.closed
        # Still usable by the client and by its owner.
        assert (await client.complete(request("again"))).content == "You said: again"
        async with session.get(server.url + "/models") as resp:
            assert resp.status == 200
    assert server.completions_served == 2


async def test_own_session_is_closed_and_reopened(server: ModelTestServer) -> None:
    client = OpenAIClient(base_url=server.url, model="m")
    await client.complete(request())
    session = client._session
    assert session is not None
    await client.close()
    assert session.closed
    await client.close()
    assert (await client.complete(request("again"))).content == "You said: again"
    await client.close()


async def test_bearer_auth_header_is_sent(server: ModelTestServer) -> None:
    # The test server does not check auth; reach it through a session whose
    # trace hooks see the outgoing headers.
    seen: list[str | None] = []

    async def on_start(_s: object, _c: object, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(params.headers.get("Authorization"))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        with_key = OpenAIClient(base_url=server.url, model="m", api_key="sk-1", session=session)
        without = OpenAIClient(base_url=server.url, model="m", session=session)
        await with_key.complete(request())
        await without.complete(request())
    assert seen == ["Bearer sk-1", None]


async def test_concurrent_requests(server: ModelTestServer) -> None:
    async with OpenAIClient(base_url=server.url, model="m") as client:
        replies = await asyncio.gather(*(client.complete(request(f"n{i}")) for i in range(50)))
    assert [r.content for r in replies] == [f"You said: n{i}" for i in range(50)]
    assert server.completions_served == 50


async def test_factory_builds_a_working_openai_client(server: ModelTestServer) -> None:
    spec = ModelSpec(provider="openai", base_url=server.url, api_key_env="TEST_KEY")
    client = create_client(spec, name="gpt-small", environ={"TEST_KEY": "sk-x"})
    try:
        assert isinstance(client, OpenAIClient)
        await client.complete(request())
    finally:
        await client.close()
    assert server.requests[0]["model"] == "gpt-small"
