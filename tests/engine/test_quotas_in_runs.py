"""Quotas in a run: a refused call is an error the model sees, and is not counted."""

from __future__ import annotations

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import call, resources, rules


async def test_per_run_and_per_session_quotas(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    three = {"tool_calls": [call("add_quota", a=1, b=i) for i in range(3)]}
    model_server.set_rules(rules(three, {"content": "done"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["add_quota"]))
        first = await rt.run("bot", "go", session="s")
        outputs = [
            m["content"] for m in model_server.requests[-1]["messages"] if m["role"] == "tool"
        ]
        second = await rt.run("bot", "go again", session="s")
        later = [m["content"] for m in model_server.requests[-1]["messages"] if m["role"] == "tool"]
        replayed = await rt.replay(first.run_id)
    assert first.ok and second.ok and replayed == first
    # per_run=2: the third call of the reply is refused, in call order.
    assert outputs[:2] == ["1", "2"]
    assert "quota exceeded" in outputs[2] and "per_run" in outputs[2]
    # per_session=3: the session had 2 counted calls, so one more is allowed.
    assert later[-3:][0] == "1" and all("per_session" in o for o in later[-3:][1:])
    counted = await store.count_tool_calls(namespace="default", tool="add_quota", session_id="s")
    assert counted == 3  # refused calls are recorded but not counted
    results = [e for e in await store.read_events(first.run_id) if e.type == ev.TOOL_RESULT]
    assert [e.data.get("reconciled") for e in results].count("quota") == 1
