"""The test model server's simulated prefix cache, over real HTTP: each reply reports
in ``usage.prompt_tokens_details.cached_tokens`` the longest prefix (whole leading
messages, identical tools) it shares with an earlier request this server answered,
counted as the server counts prompt tokens; per server; streamed replies too; a
server without it reports nothing, and the client reads what is reported."""

from __future__ import annotations

from agentrt.models.base import ModelRequest, ToolDef
from agentrt.models.openai import OpenAIClient
from agentrt.models.testserver import ModelTestServer
from agentrt.models.tokens import estimate_tokens, message_chars
from tests.conftest import rules

SYSTEM = {"role": "system", "content": "You are a careful assistant. " * 10}
FIRST = [SYSTEM, {"role": "user", "content": "what is two plus two, please?"}]
SECOND = [*FIRST, {"role": "assistant", "content": "four"}, {"role": "user", "content": "and 3?"}]
TOOL = ToolDef("add", "adds", {"type": "object"})


async def test_a_reply_reports_the_prefix_shared_with_an_earlier_request() -> None:
    async with (
        ModelTestServer(rules({"content": "four"}), prefix_cache=True) as server,
        ModelTestServer(rules({"content": "four"}), prefix_cache=True) as other,
        OpenAIClient(base_url=server.url, model="m", max_retries=0) as client,
        OpenAIClient(base_url=other.url, model="m", max_retries=0) as elsewhere,
    ):
        first = await client.complete(ModelRequest("m", FIRST))
        assert (first.input_tokens, first.cached_tokens) == (estimate_tokens(FIRST), 0)
        second = await client.complete(ModelRequest("m", SECOND))
        assert second.cached_tokens == sum(message_chars(m) for m in FIRST) // 4 > 0
        assert second.input_tokens == estimate_tokens(SECOND)
        again = await client.complete(ModelRequest("m", SECOND))  # the whole prompt, once more
        assert again.cached_tokens == min(sum(map(message_chars, SECOND)) // 4, again.input_tokens)
        # Other tools: another prompt from its start.
        tooled = await client.complete(ModelRequest("m", SECOND, tools=[TOOL]))
        assert tooled.cached_tokens == 0
        # Another server has a cache of its own.
        assert (await elsewhere.complete(ModelRequest("m", SECOND))).cached_tokens == 0
        streamed = await elsewhere.stream(ModelRequest("m", SECOND), lambda _delta: None)
        assert streamed.cached_tokens == again.cached_tokens
        cache = server.prefix_cache
        assert cache is not None and cache.hits == second.cached_tokens + again.cached_tokens


async def test_a_server_without_the_cache_reports_no_cached_tokens() -> None:
    async with (
        ModelTestServer(rules({"content": "four"})) as server,
        OpenAIClient(base_url=server.url, model="m", max_retries=0) as client,
    ):
        await client.complete(ModelRequest("m", FIRST))
        reply = await client.complete(ModelRequest("m", FIRST))
        assert reply.cached_tokens == 0 and server.prefix_cache is None
