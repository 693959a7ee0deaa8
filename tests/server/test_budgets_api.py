"""A tenant's Budget over the API: applied like any resource, and a query it has no
room for is answered 429 ``budget_exhausted`` naming the limit (over A2A, the
JSON-RPC error -32050), with nothing created."""

from __future__ import annotations

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
