"""A tenant's Budget over the API: applied like any resource, and a query it has no
room for is answered 429 ``budget_exhausted`` naming the limit, with nothing created."""

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
    assert (await admin.call("GET", "/v1/runs")).body["items"] == []
    wrong = await admin.apply(BUDGET.replace("period: day", "period: week"))
    assert wrong.status == 422 and "spec.period" in wrong.text
