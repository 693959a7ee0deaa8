"""What the engine sends keeps a stable prefix, so providers' prefix caches hit: the
instructions, the tools (identical and in the same order), then the conversation,
only ever appended to. Step N+1's request starts with exactly the messages of step
N's, across the turns of a session too; checked on the requests the test model
server received over real HTTP."""

from __future__ import annotations

import itertools
import json
from typing import Any

from agentrt import Runtime
from agentrt.models.testserver import ModelTestServer
from agentrt.state import Store
from tests.conftest import call, resources, rules


def _assert_prefix_stable(requests: list[dict[str, Any]]) -> None:
    """Each request's tools and messages begin byte for byte (keys in the same order
    too) as the request before's: what a provider's cache compares."""
    for before, after in itertools.pairwise(requests):
        assert json.dumps(after["tools"]) == json.dumps(before["tools"])
        sent = [json.dumps(m) for m in after["messages"]]
        assert sent[: len(before["messages"])] == [json.dumps(m) for m in before["messages"]]
        assert len(after["messages"]) > len(before["messages"])


async def test_each_step_s_request_begins_with_the_step_before_s(
    any_store: Store, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        rules(
            {"tool_calls": [call("add", a=1, b=2), call("record", value="x")]},
            {"tool_calls": [call("add", a=3, b=4)]},
            {"content": "done {last_tool_result}"},
        )
    )
    docs = resources(
        model_server.url,
        tools=["add", "record"],
        agent={"instructions": "You add numbers.", "loop": {"parallel_tool_calls": True}},
    )
    async with Runtime(any_store) as rt:
        await rt.apply(docs)
        for turn in range(3):
            result = await rt.run("bot", f"turn {turn}", session="s")
            assert result.status == "succeeded"
    requests = model_server.requests
    assert len(requests) == 9
    assert requests[0]["messages"][0] == {"role": "system", "content": "You add numbers."}
    assert [t["function"]["name"] for t in requests[0]["tools"]] == ["add", "record"]
    _assert_prefix_stable(requests)
