"""The run actions over real HTTP: what each does and records (with who asked), and
every refusal: a role that may not, another tenant's or another user's run (404,
saying nothing of it), a state the action does not apply to (409, nothing written)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.server.harness import Api, Served
from tests.server.run_fixtures import events_of, in_tool_call, script, submitted, until, yaml


async def _keys(served: Served, tenant: str, http: aiohttp.ClientSession) -> dict[str, Api]:
    """An API for each role of ``tenant`` (names: the role's), and one of another tenant."""
    apis = {
        role: Api(served, await served.key(tenant, role, name=role), http)
        for role in ("viewer", "user", "operator", "admin")
    }
    apis["stranger"] = Api(served, await served.key(f"{tenant}-x", "admin", name="x"), http)
    apis["other-user"] = Api(served, await served.key(tenant, "user", name="user2"), http)
    return apis


async def test_each_action_does_what_it_says_and_names_who_asked(
    served: Served, tenant: str, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(script())
    keys = await _keys(served, tenant, http)
    op, user = keys["operator"], keys["user"]
    assert (await keys["admin"].apply(yaml(served.model.url))).status == 200

    # Approve (step 1 is the model's, 2 its tool call): the run goes on and ends; the
    # decision names the operator.
    waiting = await submitted(user, "add them")
    await until(user, waiting, "waiting_approval")
    approved = await op.call("POST", f"/v1/runs/{waiting}/approve", json={"step": 2, "wait": True})
    assert approved.status == 200, approved
    assert approved.body["result"]["output"] == "got 5"
    view = (await op.call("GET", f"/v1/runs/{waiting}")).body
    assert [e["data"] for e in events_of(view, "approval.decided")] == [
        {"approved": True, "by": "key:operator"}
    ]
    assert view["run"]["principal"] == "key:user"
    assert events_of(view, "run.created")[0]["data"]["by"] == "key:user"

    # Deny: the model hears who denied it and why.
    denied_run = await submitted(user, "add again")
    await until(user, denied_run, "waiting_approval")
    denied = await op.call(
        "POST", f"/v1/runs/{denied_run}/deny", json={"step": 2, "reason": "not today"}
    )
    assert denied.status == 202, denied
    done = await until(op, denied_run, "succeeded")
    assert done["run"]["status"] == "succeeded"
    results = [e["data"]["output"] for e in events_of(done, "tool.result")]
    assert results == ["denied by key:operator: not today"]

    # Cancel: the user's own run, mid tool call; the end names the user and when it asked.
    napping = await submitted(user, "nap now")
    await in_tool_call(user, napping, "nap")
    cancelled = await user.call("POST", f"/v1/runs/{napping}/cancel")
    assert cancelled.status == 200, cancelled
    assert cancelled.body["run"]["status"] == "cancelled"
    assert cancelled.body["run"]["cancel_by"] == "key:user"
    end = events_of((await user.call("GET", f"/v1/runs/{napping}")).body, "run.finished")
    assert [(e["data"]["status"], e["data"]["by"]) for e in end] == [("cancelled", "key:user")]
    assert end[0]["data"]["asked_at"] <= end[0]["ts"]

    # Fork: a new run of the forker's, sharing the steps up to the fork point.
    forked = await user.call(
        "POST",
        f"/v1/runs/{waiting}/fork",
        json={"step": 1, "instructions": "be terse", "wait": True},
    )
    assert forked.status == 200, forked
    new = forked.body["run"]
    assert (new["parent_run"], new["fork_step"], new["principal"]) == (waiting, 1, "key:user")
    assert forked.headers["Location"] == f"/v1/runs/{new['id']}"
    background = await op.call("POST", f"/v1/runs/{waiting}/fork", json={"step": 0})
    assert background.status == 201 and background.body["run"]["principal"] == "key:operator"

    # Export: the whole log, with who started the run.
    exported = await user.call("GET", f"/v1/runs/{waiting}/export")
    assert exported.status == 200, exported
    assert exported.body["format"] == "agentrt.run/v1"
    assert exported.body["run"]["principal"] == "key:user"
    assert [e["seq"] for e in exported.body["events"]] == [e["seq"] for e in view["events"]]


# Each action, how to ask for it, and what a role it is refused to gets.
ACTIONS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "cancel": ("POST", "cancel", None),
    "resume": ("POST", "resume", None),
    "fork": ("POST", "fork", {"step": 0}),
    "approve": ("POST", "approve", {"step": 2}),
    "deny": ("POST", "deny", {"step": 2, "reason": "no"}),
    "resolve": ("POST", "resolve", {"step": 1, "action": "rerun"}),
    "export": ("GET", "export", None),
}
# The keys that may not take each action on the run (which the admin started):
# 403 for a role below the action's, 404 for a run the key may not know of.
REFUSED: dict[str, dict[str, int]] = {
    "cancel": {"viewer": 403, "other-user": 404, "stranger": 404},
    "resume": {"viewer": 403, "other-user": 404, "stranger": 404},
    "fork": {"viewer": 403, "other-user": 404, "stranger": 404},
    "approve": {"viewer": 403, "user": 403, "other-user": 403, "stranger": 404},
    "deny": {"viewer": 403, "user": 403, "other-user": 403, "stranger": 404},
    "resolve": {"viewer": 403, "user": 403, "other-user": 403, "stranger": 404},
    "export": {"user": 404, "other-user": 404, "stranger": 404},
}


async def test_each_action_is_refused_to_a_key_that_may_not_take_it(
    served: Served, tenant: str, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(script())
    keys = await _keys(served, tenant, http)
    assert (await keys["admin"].apply(yaml(served.model.url))).status == 200
    run_id = await submitted(keys["admin"], "add them")
    before = await until(keys["admin"], run_id, "waiting_approval")
    for action, refusals in REFUSED.items():
        method, path, body = ACTIONS[action]
        for who, status in refusals.items():
            reply = await keys[who].call(method, f"/v1/runs/{run_id}/{path}", json=body)
            assert reply.status == status, (action, who, reply)
            assert run_id not in reply.text, (action, who, reply.text)
    # An unknown id is the same 404 as a foreign one.
    for action, (method, path, body) in ACTIONS.items():
        reply = await keys["admin"].call(method, f"/v1/runs/run_nope/{path}", json=body)
        assert reply.status == 404, (action, reply)
    after = (await keys["admin"].call("GET", f"/v1/runs/{run_id}")).body
    assert after == before, "no refusal wrote anything"


async def test_an_action_the_runs_state_does_not_allow_is_a_conflict(
    served: Served, admin: Api
) -> None:
    served.model.set_rules(script())
    assert (await admin.apply(yaml(served.model.url))).status == 200
    finished = await submitted(admin, "hello", target="echo", wait=True)
    waiting = await submitted(admin, "add them")
    await until(admin, waiting, "waiting_approval")
    conflicts = [
        (finished, "cancel", None, "already ended succeeded"),
        (finished, "resume", None, "already succeeded"),
        (finished, "approve", {"step": 1}, "not waiting for approval"),
        (finished, "deny", {"step": 1, "reason": "x"}, "not waiting for approval"),
        (finished, "resolve", {"step": 1, "action": "rerun"}, "not waiting for a decision"),
        (waiting, "resume", None, "waiting_approval, not interrupted"),
        (waiting, "approve", {"step": 1}, "step 1 of run"),
        (waiting, "resolve", {"step": 1, "action": "fail", "reason": "x"}, "not waiting for"),
    ]
    states = {r: (await admin.call("GET", f"/v1/runs/{r}")).body for r in (finished, waiting)}
    for run_id, path, body, says in conflicts:
        reply = await admin.call("POST", f"/v1/runs/{run_id}/{path}", json=body)
        assert reply.status == 409, (path, reply)
        assert says in reply.body["error"]["message"], (path, reply.body)
        assert reply.body["error"]["code"] == "conflict"
    for run_id, state in states.items():
        assert (await admin.call("GET", f"/v1/runs/{run_id}")).body == state, "nothing written"
    # Bad requests name the field; a step past the run's end names the range.
    bad = await admin.call("POST", f"/v1/runs/{finished}/fork", json={"step": 9})
    assert bad.status == 400 and "between 0 and 1" in bad.body["error"]["message"], bad
    unknown = await admin.call(
        "POST", f"/v1/runs/{waiting}/resolve", json={"step": 1, "action": "output"}
    )
    assert unknown.status == 422 and unknown.body["error"]["param"] == "output", unknown
    extra = await admin.call("POST", f"/v1/runs/{waiting}/cancel", json={"colour": "red"})
    assert extra.status == 422 and extra.body["error"]["issues"][0]["field"] == "body.colour"
    nul = await admin.call("POST", f"/v1/runs/{waiting}/fork", json={"step": 0, "model": "m\0"})
    assert nul.status == 422 and nul.body["error"]["issues"][0]["field"] == "body.model"
    assert (await admin.call("POST", "/v1/runs/run%00x/cancel")).status == 404
    assert (await admin.call("GET", "/v1/runs?target=bot%00")).status == 422
