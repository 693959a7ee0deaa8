"""A tenant's Budget over the API: applied like any resource, and a query it has no
room for is answered 429 ``budget_exhausted`` naming the limit (over A2A, the
JSON-RPC error -32050), with nothing created."""

from __future__ import annotations

import aiohttp

from tests.conftest import call, rules
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served

BUDGET = (
    "apiVersion: agentrt.dev/v1\nkind: Budget\nmetadata: {name: tight}\n"
    "spec: {period: day, max_cost_usd: 0.0}\n"
)


async def test_a_query_the_tenants_budget_has_no_room_for_is_429(
    served: Served, admin: Api
) -> None:
    model = agent_yaml(served.model.url).replace(
        "max_retries: 0}", "max_retries: 0, pricing: {input_per_mtok: 1.0}}"
    )
    assert (await admin.apply(model)).status == 200
    assert (await admin.apply(BUDGET)).status == 200
    listed = await admin.call("GET", "/v1/resources?kind=Budget")
    assert [r["name"] for r in listed.body["items"]] == ["tight"]
    reply = await admin.call("POST", "/v1/queries", json={"target": "bot", "input": "hi"})
    assert reply.status == 429, reply
    assert reply.body["error"]["code"] == "budget_exhausted"
    assert "budget " in reply.body["error"]["message"] and "max_cost_usd=0" in reply.text
    chat = {"model": "agent/bot", "messages": [{"role": "user", "content": "hi"}]}
    completion = await admin.call("POST", "/v1/chat/completions", json=chat)
    assert completion.status == 429 and completion.body["error"]["code"] == "budget_exhausted"
    message = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}
    sent = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}
    answer = await admin.call("POST", "/a2a/bot/", json=sent)
    assert answer.status == 200 and answer.body["error"]["code"] == -32050, answer
    assert "max_cost_usd=0" in answer.body["error"]["message"]
    assert (await admin.call("GET", "/v1/runs")).body["items"] == []
    wrong = await admin.apply(BUDGET.replace("period: day", "period: week"))
    assert wrong.status == 422 and "spec.period" in wrong.text


async def test_an_operator_raises_a_stopped_run_over_the_api_and_it_goes_on(
    served: Served, admin: Api, tenant: str, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(
        rules(
            {"tool_calls": [call("add", a=2, b=3)]},
            {"tool_calls": [call("add", a=4, b=5)]},
            {"content": "both added"},
            match="^add twice",
        )
    )
    limited = agent_yaml(served.model.url, tools=True).replace(
        "tools: [add]}", "tools: [add], budgets: {max_tool_calls: 1}}"
    )
    assert (await admin.apply(limited)).status == 200
    query = {"target": "bot", "input": "add twice", "wait": True}
    stopped = await admin.call("POST", "/v1/queries", json=query)
    assert stopped.body["run"]["status"] == "budget_exhausted", stopped
    run_id = stopped.body["run"]["id"]
    path = f"/v1/runs/{run_id}/resume"
    raise_it = {"add_budget": {"tool_calls": 1}, "wait": True}
    user = Api(served, await served.key(tenant, "user"), http)
    refused = await user.call("POST", path, json=raise_it)
    assert refused.status == 403 and "operator role" in refused.text, refused
    wrong = await admin.call("POST", path, json={"add_budget": {"tool_calls": -1}})
    assert wrong.status == 422, wrong
    raised = await admin.call("POST", path, json=raise_it)
    assert raised.status == 200, raised
    assert raised.body["run"]["status"] == "succeeded"
    assert raised.body["result"]["output"] == "both added"
    again = await admin.call("POST", path, json=raise_it)
    assert again.status == 409 and "budget_exhausted" in again.text
    events = (await admin.call("GET", f"/v1/runs/{run_id}")).body["events"]
    reopened = [e for e in events if e["type"] == "run.reopened"]
    assert [e["data"]["added"] for e in reopened] == [{"tool_calls": 1}]
    assert reopened[0]["data"]["by"] == "key:admin"
