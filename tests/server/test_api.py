"""The control plane's first endpoints over real HTTP: keys, resources, queries and
runs, each in the caller's tenant only."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import call, rules
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served


async def test_a_request_without_a_valid_key_is_refused(
    served: Served, admin: Api, http: aiohttp.ClientSession
) -> None:
    for key in (None, "nope", "agrt_0000000000000000_" + "x" * 43):
        reply = await Api(served, key, http).call("GET", "/v1/runs")
        assert reply.status == 401, reply
        assert reply.body["error"]["code"] == "unauthenticated"
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await admin.call("GET", "/v1/runs")).status == 200


async def test_a_revoked_key_is_refused_at_its_next_request(
    served: Served, tenant: str, http: aiohttp.ClientSession
) -> None:
    text = await served.key(tenant, "viewer")
    api = Api(served, text, http)
    assert (await api.call("GET", "/v1/runs")).status == 200
    key_id = text.split("_")[1]
    from agentrt.server.keys import revoke_key
    from agentrt.state import Store

    async with Store.from_url(served.store_url) as store:
        await revoke_key(store, key_id, now=0.0)
    assert (await api.call("GET", "/v1/runs")).status == 401


async def test_resources_are_applied_read_and_deleted_by_generation(
    served: Served, admin: Api
) -> None:
    applied = await admin.apply(agent_yaml(served.model.url))
    assert applied.status == 200, applied
    names = [(r["kind"], r["name"], r["generation"]) for r in applied.body["applied"]]
    assert names == [("Model", "m", 1), ("Agent", "bot", 1)]
    got = await admin.call("GET", "/v1/resources/Agent/bot")
    assert got.status == 200 and got.headers["ETag"] == '"1"'
    assert got.body["namespace"] == admin_tenant(got)
    changed = agent_yaml(served.model.url).replace("be brief", "be very brief")
    assert (await admin.apply(changed)).status == 200
    listed = await admin.call("GET", "/v1/resources?kind=Agent")
    assert [(r["name"], r["generation"]) for r in listed.body["items"]] == [("bot", 2)]
    stale = await admin.call("DELETE", "/v1/resources/Agent/bot", headers={"If-Match": '"1"'})
    assert stale.status == 412, stale
    gone = await admin.call("DELETE", "/v1/resources/Agent/bot", headers={"If-Match": '"2"'})
    assert gone.status == 200
    assert (await admin.call("GET", "/v1/resources/Agent/bot")).status == 404


def admin_tenant(reply: object) -> str:
    return reply.body["resource"]["metadata"]["namespace"]  # type: ignore[attr-defined]


async def test_a_bad_resource_names_its_document_field_and_fix(served: Served, admin: Api) -> None:
    text = agent_yaml(served.model.url).replace(
        "instructions: be brief", "instructions: x, bogus: 1"
    )
    reply = await admin.apply(text + "---\nkind: Agent\n")
    assert reply.status == 422, reply
    issues = reply.body["error"]["issues"]
    assert {
        "document": "document 2", "resource": "Agent/bot", "field": "spec.bogus",
    }.items() <= issues[0].items()  # fmt: skip
    assert issues[0]["fix"]
    assert issues[1]["resource"].startswith("Agent (document 3")
    # Nothing of a refused apply is stored.
    assert (await admin.call("GET", "/v1/resources")).body["items"] == []


async def test_a_resource_may_not_reach_into_the_servers_host(served: Served, admin: Api) -> None:
    model = "apiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {name: m}\n"
    reaches = {
        "spec.api_key_env": model + "spec: {provider: openai, base_url: 'http://x', "
        "api_key_env: HOME}\n",
        "spec.callable": "apiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: t}\n"
        "spec: {kind: python, callable: 'os:system'}\n",
        "spec.http.headers.Authorization": "apiVersion: agentrt.dev/v1\nkind: Tool\n"
        "metadata: {name: h}\nspec: {kind: http, http: {url: 'http://x', "
        "headers: {Authorization: '${file:/etc/passwd}'}}}\n",
        "spec.mcp.command": "apiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: c}\n"
        "spec: {kind: mcp, mcp: {command: [sh, -c, 'id']}}\n",
    }
    for field, text in reaches.items():
        reply = await admin.apply(text)
        assert reply.status == 422, (field, reply)
        assert reply.body["error"]["issues"][0]["field"] == field, reply.body
    assert (await admin.call("GET", "/v1/resources")).body["items"] == []


async def test_a_query_is_answered_or_run_in_the_background(served: Served, admin: Api) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": "5"}))
    assert (await admin.apply(agent_yaml(served.model.url, tools=True))).status == 200
    answered = await admin.call(
        "POST", "/v1/queries", json={"target": "bot", "input": "2+3?", "wait": True}
    )
    assert answered.status == 200, answered
    assert answered.body["result"]["status"] == "succeeded"
    assert answered.body["result"]["output"] == "5"
    queued = await admin.call("POST", "/v1/queries", json={"target": "bot", "input": "again"})
    assert queued.status == 202 and queued.headers["Location"].startswith("/v1/runs/")
    run_id = queued.body["run"]["id"]
    for _ in range(200):
        run = await admin.call("GET", f"/v1/runs/{run_id}")
        if run.body["run"]["status"] == "succeeded":
            break
        await asyncio.sleep(0.05)
    assert run.body["run"]["status"] == "succeeded"
    assert [e["type"] for e in run.body["events"]][-1] == "run.finished"
    listed = await admin.call("GET", "/v1/runs?status=succeeded")
    assert {r["id"] for r in listed.body["items"]} >= {run_id, answered.body["run"]["id"]}


async def test_one_idempotency_key_starts_one_run_however_often_it_is_sent(
    served: Served, admin: Api
) -> None:
    served.model.set_rules(rules({"content": "once"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    body = {"target": "bot", "input": "hi", "idempotency_key": "order-17"}
    replies = await asyncio.gather(
        *(admin.call("POST", "/v1/queries", json=body) for _ in range(10))
    )
    assert all(r.status == 202 for r in replies), replies
    assert len({r.body["run"]["id"] for r in replies}) == 1


async def test_another_tenants_runs_and_resources_do_not_exist_for_a_key(
    served: Served, admin: Api, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(rules({"content": "mine"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    mine = await admin.call(
        "POST", "/v1/queries", json={"target": "bot", "input": "x", "wait": True}
    )
    run_id = mine.body["run"]["id"]
    other = Api(served, await served.key("other-tenant", "admin"), http)
    for path in (f"/v1/runs/{run_id}", "/v1/resources/Agent/bot"):
        reply = await other.call("GET", path)
        assert reply.status == 404 and run_id not in reply.text, reply
    assert run_id not in (await other.call("GET", "/v1/runs")).text
    assert (await other.call("GET", "/v1/resources")).body["items"] == []
    refused = await other.call("DELETE", "/v1/resources/Agent/bot")
    assert refused.status == 404
    assert (await admin.call("GET", "/v1/resources/Agent/bot")).status == 200
    # Nor can it start a run of the other tenant's agent.
    started = await other.call("POST", "/v1/queries", json={"target": "bot", "input": "x"})
    assert started.status == 404, started
    tenant = mine.body["run"]["namespace"]
    assert tenant not in started.text, started  # not even where the agent is


async def test_each_role_does_what_it_may_and_no_more(
    served: Served, admin: Api, tenant: str, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(rules({"content": "ok"}))
    text = agent_yaml(served.model.url)
    viewer = Api(served, await served.key(tenant, "viewer"), http)
    user = Api(served, await served.key(tenant, "user"), http)
    assert (await viewer.apply(text)).status == 403
    assert (await user.apply(text)).status == 403
    assert (await admin.apply(text)).status == 200
    query = {"target": "bot", "input": "hi"}
    assert (await viewer.call("POST", "/v1/queries", json=query)).status == 403
    assert (await user.call("POST", "/v1/queries", json=query)).status == 202
    assert (await viewer.call("GET", "/v1/resources/Agent/bot")).status == 200


async def test_malformed_and_oversized_requests_get_a_clear_4xx(served: Served, admin: Api) -> None:
    bad = {
        "not json": await admin.call(
            "POST", "/v1/queries", data="{", headers={"Content-Type": "application/json"}
        ),
        "wrong type": await admin.call("POST", "/v1/queries", json={"target": 5, "input": "x"}),
        "unknown field": await admin.call(
            "POST", "/v1/queries", json={"target": "bot", "input": "x", "colour": "red"}
        ),
        "not yaml": await admin.apply("a: [\n"),
        "bad status": await admin.call("GET", "/v1/runs?status=sleeping"),
        "too large": await admin.apply("x" * (2 << 20)),
    }
    for what, reply in bad.items():
        assert 400 <= reply.status < 500, (what, reply)
        assert reply.body["error"]["message"], (what, reply)
    assert bad["too large"].status == 413
    assert bad["unknown field"].body["error"]["issues"][0]["field"] == "body.colour"


async def test_what_the_schema_cannot_catch_is_refused_by_name(served: Served, admin: Api) -> None:
    # A misspelt filter is refused, not ignored (it would list every run).
    typo = await admin.call("GET", "/v1/runs?stauts=running")
    assert typo.status == 422 and typo.body["error"]["param"] == "stauts", typo
    assert "status" in typo.body["error"]["message"]
    nameless = await admin.call("GET", "/v1/sessions?=x")
    assert nameless.status == 422, nameless
    # An apply with nothing in it is a mistake, not an empty success.
    for empty in ("", "# only a comment\n"):
        reply = await admin.apply(empty)
        assert reply.status == 400 and "no resources" in reply.body["error"]["message"], reply
    assert (await admin.call("POST", "/v1/resources", json=[])).status == 400
    # A method a path lacks: Allow names every method the path has.
    wrong = await admin.call("PUT", "/v1/resources/Agent/bot")
    assert wrong.status == 405 and wrong.headers["Allow"] == "DELETE, GET", wrong
    # A decision without the field its action needs names that field.
    resolve = await admin.call("POST", "/v1/runs/r/resolve", json={"step": 1, "action": "fail"})
    assert resolve.status == 422 and resolve.body["error"]["param"] == "reason", resolve
