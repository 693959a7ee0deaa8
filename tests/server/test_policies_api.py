"""A tenant's Policy over the HTTP API of a real ``agentrt serve``: applied like any
resource, it selects calls by the role of the key that started the run; the refused
call is counted in the run's view and recorded in the tenant's audit log."""

from __future__ import annotations

import aiohttp

from agentrt.client import AgentrtClient
from agentrt.spec import ScriptedRule
from agentrt.state import Store
from tests.conftest import call
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served
from tests.server.run_fixtures import submitted, until

POLICY = (
    "---\napiVersion: agentrt.dev/v1\nkind: Policy\nmetadata: {name: sums}\n"
    "spec:\n  rules:\n"
    "    - {name: no-users, effect: deny, tools: [add], roles: [user], reason: ask an operator}\n"
)


async def test_a_policy_holds_a_user_keys_runs_to_its_rules(
    served: Served, tenant: str, http: aiohttp.ClientSession
) -> None:
    steps = [{"tool_calls": [call("add", a=2, b=3)]}, {"content": "got {last_tool_result}"}]
    served.model.set_rules([ScriptedRule.model_validate({"steps": steps})])
    admin = Api(served, await served.key(tenant, "admin", name="boss"), http)
    user = Api(served, await served.key(tenant, "user", name="ann"), http)
    operator = Api(served, await served.key(tenant, "operator", name="ops"), http)
    applied = await admin.apply(agent_yaml(served.model.url, tools=True) + POLICY)
    assert applied.status == 200, applied
    listed = await admin.call("GET", "/v1/resources?kind=Policy")
    assert [r["name"] for r in listed.body["items"]] == ["sums"]

    refused = await until(user, await submitted(user, "add"), "succeeded")
    allowed = await until(operator, await submitted(operator, "add"), "succeeded")
    outputs = [
        next(e["data"]["output"] for e in view["events"] if e["type"] == "run.finished")
        for view in (refused, allowed)
    ]
    assert outputs == ["got refused by Policy sums (rule no-users): ask an operator", "got 5"]
    assert (refused["run"]["policy_refusals"], allowed["run"]["policy_refusals"]) == (1, 0)
    async with AgentrtClient(served.base, api_key=user.key) as client:
        detail = await client.get_run(refused["run"]["id"])
    assert detail.policy_refusals == 1

    async with Store.from_url(served.store_url, read_only=True) as store:
        records = await store.list_audit(tenant, kinds=["policy.refused"])
    assert [(r.principal, r.run_id) for r in records] == [("key:ann", refused["run"]["id"])]
    assert records[0].body["policy"] == {"effect": "deny", "policy": "sums", "rule": "no-users"}
