"""A query's ``tags`` over the API reach its Agent's ``routing.rules``: the rule they
match picks the step's Model, and the decision is on the run's events."""

from __future__ import annotations

from tests.conftest import rules
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served

ROUTED = (
    "---\napiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {name: legal}\n"
    "spec: {provider: scripted, script: [{match: '.*', steps: [{content: from legal}]}]}\n"
)


async def test_a_querys_tags_route_its_steps(served: Served, admin: Api) -> None:
    served.model.set_rules(rules({"content": "from m"}))
    spec = agent_yaml(served.model.url).replace(
        "instructions: be brief}",
        "instructions: be brief, routing: {rules: [{when: {tags: [legal]}, model: legal}]}}",
    )
    assert (await admin.apply(spec + ROUTED)).status == 200
    tagged = {"target": "bot", "input": "may I?", "tags": ["legal", "eu"], "wait": True}
    reply = await admin.call("POST", "/v1/queries", json=tagged)
    assert reply.status == 200, reply
    plain = await admin.call("POST", "/v1/queries", json={**tagged, "tags": []})
    outputs = [r.body["result"]["output"] for r in (reply, plain)]
    assert outputs == ["from legal", "from m"]
    run = await admin.call("GET", f"/v1/runs/{reply.body['run']['id']}")
    intent = next(e["data"] for e in run.body["events"] if e["type"] == "model.call")
    assert intent["routing"] == {"model": "legal", "by": "rule", "rule": 0}
    wrong = await admin.call("POST", "/v1/queries", json={**tagged, "tags": [""]})
    assert wrong.status == 422, wrong
