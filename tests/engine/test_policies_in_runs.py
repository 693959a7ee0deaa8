"""A tenant's Policy resources decide every tool call of its runs, on both stores, with
the HTTP test model: a refused call never runs, the model is told why, the audit log
records it once and the run's view counts it; a call a rule holds for approval waits
and runs once approved; a replay or a resume never decides a recorded step again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.engine.run_view import read_run
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import Resource, parse_resource
from agentrt.state import SqliteStore, Store
from agentrt.state.audit import verify_audit
from tests.conftest import call, resources, rules
from tests.engine.test_team_run import team
from tests.pg import fresh_schema, url_of

PAY = rules(
    {"tool_calls": [call("charge", amount=250), call("charge", amount=5)]},
    {"content": "{last_tool_result}"},
)
NO_BIG_CHARGES = {
    "name": "big-charges",
    "effect": "deny",
    "tools": ["charge"],
    "when": [{"field": "args.amount", "op": ">=", "value": 100}],
    "reason": "charges of 100 or more go through the finance desk",
}


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store of each backend."""
    if request.param == "sqlite":
        async with await SqliteStore.open(tmp_path / "agentrt.db") as store:
            yield store
        return
    from agentrt.state import PostgresStore

    with fresh_schema() as schema:
        async with PostgresStore.from_url(url_of(schema)) as pg:
            yield pg


def policy(name: str = "payments", namespace: str = "default", **spec: Any) -> Resource:
    doc = {"kind": "Policy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    return parse_resource({"apiVersion": "agentrt.dev/v1", **doc})


def charged(effects: Path) -> list[str]:
    """The amounts the ``charge`` tool charged, in order."""
    if not effects.exists():
        return []
    return [line.split("\t")[2] for line in effects.read_text().splitlines()]


def tool_messages(server: ModelTestServer) -> list[str]:
    """What the model was told of its tool calls, in its last request."""
    return [m["content"] for m in server.requests[-1]["messages"] if m["role"] == "tool"]


async def test_a_refused_call_never_runs_and_the_model_and_the_audit_log_say_why(
    any_store: Store, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(PAY)
    async with Runtime(any_store) as rt:
        await rt.apply(
            [*resources(model_server.url, tools=["charge"]), policy(rules=[NO_BIG_CHARGES])]
        )
        result = await rt.run("bot", "pay", principal="key:ann")
        before = await any_store.list_audit("default", limit=1000)
        replayed = await rt.replay(result.run_id)
    assert result.status == "succeeded"
    assert charged(effects) == ["5"]  # the 250 was refused before it ran
    refusal = (
        "refused by Policy payments (rule big-charges): "
        "charges of 100 or more go through the finance desk"
    )
    assert tool_messages(model_server) == [refusal, "charged 5"]
    assert replayed.output == result.output
    events = await any_store.read_events(result.run_id)
    step2 = {e.type: e.data for e in events if e.step == 2}
    assert step2[ev.TOOL_CALL]["policy"] == {
        "effect": "deny",
        "policy": "payments",
        "rule": "big-charges",
    }
    assert step2[ev.TOOL_RESULT]["reconciled"] == "policy"
    assert "toolset" not in step2[ev.TOOL_CALL]  # counts against no quota
    allowed = next(e.data for e in events if e.step == 3 and e.type == ev.TOOL_CALL)
    assert allowed["policy"] == {"effect": "allow", "policy": None, "rule": "default"}
    assert (await read_run(any_store, result.run_id)).to_dict()["run"]["policy_refusals"] == 1
    records = await any_store.list_audit("default", limit=1000)
    assert records == before, "a replay records nothing"
    assert (await verify_audit(any_store, "default")).ok
    [refused] = [r for r in records if r.kind == "policy.refused"]
    assert (refused.principal, refused.run_id, refused.agent) == ("key:ann", result.run_id, "bot")
    assert refused.body["step"] == 2 and refused.body["reason"] == refusal
    assert refused.body["policy"] == {"effect": "deny", "policy": "payments", "rule": "big-charges"}
    assert refused.body["args"] == '{"amount":250}'
    assert [r.body["step"] for r in records if r.kind == "tool.call"] == [3]
    assert not [r for r in records if r.kind == "tool.refused"]


async def test_a_call_a_rule_holds_for_approval_waits_then_runs_once(
    any_store: Store, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(PAY)
    ask = {**NO_BIG_CHARGES, "effect": "require_approval", "name": "ask-finance"}
    async with Runtime(any_store) as rt:
        await rt.apply([*resources(model_server.url, tools=["charge"]), policy(rules=[ask])])
        waiting = await rt.run("bot", "pay")
        assert waiting.status == "waiting_approval"
        assert "step 2 (charge) needs approval;" in (waiting.reason or "")
        assert charged(effects) == []  # nothing of the turn ran, not even the small one
        done = await rt.approve(waiting.run_id, 2, by="key:fin")
        again = await rt.replay(waiting.run_id)
    assert done.status == "succeeded" and done.output == "charged 5"
    assert sorted(charged(effects)) == ["250", "5"]  # each exactly once
    assert again.output == done.output
    events = await any_store.read_events(waiting.run_id)
    verdict = {"effect": "require_approval", "policy": "payments", "rule": "ask-finance"}
    step2 = [(e.type, e.data.get("policy")) for e in events if e.step == 2]
    assert step2 == [
        (ev.APPROVAL_REQUESTED, verdict),
        (ev.APPROVAL_DECIDED, None),
        (ev.TOOL_CALL, verdict),  # the verdict its request recorded, kept for its call
        (ev.TOOL_RESULT, None),
    ]


async def test_a_call_waiting_for_approval_is_decided_by_the_person_whatever_the_policy_says_later(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(PAY)
    ask = {**NO_BIG_CHARGES, "effect": "require_approval"}
    async with Runtime(store) as rt:
        await rt.apply([*resources(model_server.url, tools=["charge"]), policy(rules=[ask])])
        waiting = await rt.run("bot", "pay")
        assert waiting.status == "waiting_approval"
    async with Runtime(store) as rt:  # another process, after the Policy was tightened
        await rt.apply([policy(rules=[NO_BIG_CHARGES])])
        done = await rt.approve(waiting.run_id, 2)
    assert done.status == "succeeded"
    assert sorted(charged(effects)) == ["250", "5"]  # approved as asked: not refused after


async def test_paths_under_a_directory_cannot_climb_out(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    paths = ["/data/out/report.txt", "/data/../etc/passwd", "/data/./a/../../etc/cron",
             "data/relative.txt", "/data/a\\..\\..\\etc\\x", "//data//ok.txt", "/database/x"]  # fmt: skip
    model_server.set_rules(
        rules(
            {"tool_calls": [call("write_file", path=p, text="x") for p in paths]},
            {"content": "done"},
        )
    )
    only_data = {
        "name": "data-only",
        "effect": "allow",
        "tools": ["write_file"],
        "when": [{"field": "args.path", "op": "under", "value": "/data"}],
    }
    async with Runtime(store) as rt:
        await rt.apply(
            [
                *resources(model_server.url, tools=["write_file"]),
                policy(default="deny", rules=[only_data]),
            ]
        )
        result = await rt.run("bot", "write")
    assert result.status == "succeeded"
    written = [line.split("\t")[2] for line in effects.read_text().splitlines()]
    assert written == ["/data/out/report.txt", "//data//ok.txt"]
    told = tool_messages(model_server)
    refusal = "refused by Policy payments: no rule allows this call of write_file, and the tenant's default is deny"
    assert [t == refusal for t in told] == [False, True, True, True, True, False, True]
    assert (await read_run(store, result.run_id)).policy_refusals == 5


async def test_a_default_deny_holds_only_its_own_tenant(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(
        rules({"tool_calls": [call("add", a=2, b=3), call("charge", amount=1)]}, {"content": "ok"})
    )
    allow_add = {"name": "sums", "effect": "allow", "tools": ["add"]}
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["add", "charge"]))
        sequential = {"loop": {"parallel_tool_calls": False}}  # one call after the other
        await rt.apply(
            resources(model_server.url, tools=["add", "charge"], namespace="acme", agent=sequential)
        )
        await rt.apply([policy("lockdown", "acme", default="deny", rules=[allow_add])])
        locked = await rt.run("bot", "go", namespace="acme")
        locked_told = tool_messages(model_server)
        free = await rt.run("bot", "go")
    assert locked.status == free.status == "succeeded"
    assert locked_told == [
        "5",
        "refused by Policy lockdown: no rule allows this call of charge, and the tenant's "
        "default is deny",
    ]
    assert tool_messages(model_server) == ["5", "charged 1"]  # "default" has no Policy
    assert charged(effects) == ["1"]
    free_calls = [e.data for e in await store.read_events(free.run_id) if e.type == ev.TOOL_CALL]
    assert all("policy" not in data for data in free_calls)  # without a Policy, nothing recorded
    assert [r.kind for r in await store.list_audit("default", kinds=["policy.refused"])] == []
    assert len(await store.list_audit("acme", kinds=["policy.refused"])) == 1


async def test_the_strictest_rule_wins_across_policies_principals_and_roles(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(
        rules({"tool_calls": [call("charge", amount=7)]}, {"content": "{last_tool_result}"})
    )
    policies = [
        policy("a-open", rules=[{"name": "anyone", "effect": "allow", "tools": ["char*"]}]),
        policy(
            "b-people", rules=[{"name": "not-bob", "effect": "deny", "principals": ["key:bob"]}]
        ),
        policy(
            "c-roles",
            rules=[
                {"name": "viewers", "effect": "deny", "roles": ["viewer"]},
                {
                    "name": "users-ask",
                    "effect": "require_approval",
                    "roles": ["user"],
                    "when": [{"field": "role", "op": "not_in", "value": ["admin"]}],
                },
            ],
        ),
    ]
    async with Runtime(store) as rt:
        await rt.apply([*resources(model_server.url, tools=["charge"]), *policies])
        ann = await rt.run("bot", "pay", principal="key:ann", role="operator")
        bob = await rt.run("bot", "pay", principal="key:bob", role="admin")
        viewer = await rt.run("bot", "pay", principal="key:vic", role="viewer")
        user = await rt.run("bot", "pay", principal="key:uma", role="user")
        cli = await rt.run("bot", "pay")
    assert ann.output == "charged 7" and cli.output == "charged 7"
    assert (
        bob.output
        == "refused by Policy b-people (rule not-bob): this call of charge is not allowed"
    )
    assert (
        viewer.output
        == "refused by Policy c-roles (rule viewers): this call of charge is not allowed"
    )
    assert user.status == "waiting_approval"
    assert charged(effects) == ["7", "7"]


async def test_a_child_run_is_held_to_the_role_its_parent_was_started_with(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(
        [
            *rules(
                {"tool_calls": [call("charge", amount=3)]},
                {"content": "{last_tool_result}"},
                match="^pay",
            ),
            *rules(
                {"tool_calls": [call("payer", input="pay it")]}, {"content": "{last_tool_result}"}
            ),
        ]
    )
    docs = resources(model_server.url, tools=["charge"])
    payer = parse_resource({
        "apiVersion": "agentrt.dev/v1", "kind": "Tool", "metadata": {"name": "payer"},
        "spec": {"kind": "agent", "agent": {"agent": "bot"}},
    })  # fmt: skip
    lead = parse_resource({
        "apiVersion": "agentrt.dev/v1", "kind": "Agent", "metadata": {"name": "lead"},
        "spec": {"model": "m", "tools": ["payer"]},
    })  # fmt: skip
    no_users = {"name": "no-users", "effect": "deny", "tools": ["charge"], "roles": ["user"]}
    async with Runtime(store) as rt:
        await rt.apply([*docs, payer, lead, policy(rules=[no_users])])
        as_user = await rt.run("lead", "go", principal="key:uma", role="user")
        as_operator = await rt.run("lead", "go", principal="key:ops", role="operator")
    assert (
        as_user.output
        == "refused by Policy payments (rule no-users): this call of charge is not allowed"
    )
    assert as_operator.output == "charged 3"
    assert charged(effects) == ["3"]
    refused = await store.list_audit("default", kinds=["policy.refused"])
    assert [(r.principal, r.agent) for r in refused] == [("key:uma", "bot")]


async def test_a_replay_or_a_fork_keeps_what_was_decided_after_the_policy_is_gone(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(PAY)
    async with Runtime(store) as rt:
        await rt.apply(
            [*resources(model_server.url, tools=["charge"]), policy(rules=[NO_BIG_CHARGES])]
        )
        result = await rt.run("bot", "pay")
        await rt.delete_resource("Policy", "payments")
    async with Runtime(store) as rt:  # no Policy any more, and a fresh book of them
        replayed = await rt.replay(result.run_id)
        forked = await rt.fork(result.run_id, from_step=3)
        forked_result = await rt.wait(forked.id)
    assert replayed.status == "succeeded" and replayed.output == result.output
    assert forked_result.status == "succeeded"
    assert charged(effects) == ["5"]  # the fork shares the decided steps: nothing ran again
    assert (await read_run(store, forked.id)).policy_refusals == 1


async def test_a_team_tool_node_is_decided_by_the_policies_too(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    spec = {"nodes": [{"name": "pay", "tool": "charge", "input": '{"amount": 500}'}]}
    ask = {**NO_BIG_CHARGES, "name": "ask", "effect": "require_approval", "agents": ["billing"]}
    async with Runtime(store) as rt:
        await rt.apply([*resources(model_server.url, tools=["charge"]), team("billing", spec)])
        await rt.apply([policy(rules=[ask])])
        result = await rt.run("billing", "go")
    assert result.status == "failed"
    assert "Policy payments (ask) requires a person's approval" in (result.reason or "")
    assert charged(effects) == []
    [refused] = await store.list_audit("default", kinds=["policy.refused"])
    assert refused.agent == "billing" and refused.body["tool"] == "charge"


async def test_a_resumed_run_keeps_its_refusal_after_the_policy_is_gone(
    any_store: Store, model_server: ModelTestServer, effects: Path
) -> None:
    """The run's process stops in the call after a refused one; resumed by another
    process, where the Policy no longer exists, the refused step stays refused."""
    model_server.set_rules(
        rules(
            {"tool_calls": [call("charge", amount=250)]},
            {"tool_calls": [call("sleep", seconds=1.0)]},
            {"content": "done"},
        )
    )
    async with Runtime(any_store, resume_interrupted=False) as rt:
        await rt.apply(
            [
                *resources(model_server.url, tools=["charge", "sleep"]),
                policy(rules=[NO_BIG_CHARGES]),
            ]
        )
        run = await rt.submit("bot", "pay", principal="key:ann")
        deadline = time.monotonic() + 30
        while not await any_store.list_audit("default", kinds=["tool.call"]):
            assert time.monotonic() < deadline, "the sleep never started"
            await asyncio.sleep(0.01)
        await rt.delete_resource("Policy", "payments")
    # Leaving the runtime stopped the run in its sleep.
    async with Runtime(any_store) as rt:
        result = await rt.wait(run.id)
    assert result.status == "succeeded"
    assert charged(effects) == []
    assert tool_messages(model_server)[0].startswith(
        "refused by Policy payments (rule big-charges)"
    )
    assert len(await any_store.list_audit("default", kinds=["policy.refused"])) == 1
    sleeps = await any_store.list_audit("default", kinds=["tool.call"])
    assert [(r.body["step"], r.body.get("attempt")) for r in sleeps] == [(4, None), (4, 2)]


async def test_an_approved_call_a_quota_refuses_is_the_quotas_refusal(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    three = {"tool_calls": [call("add_quota", a=1, b=i) for i in range(3)]}
    model_server.set_rules(rules(three, {"content": "done"}))
    ask = {"name": "ask", "effect": "require_approval", "tools": ["add_quota"]}
    async with Runtime(store) as rt:
        await rt.apply([*resources(model_server.url, tools=["add_quota"]), policy(rules=[ask])])
        waiting = await rt.run("bot", "go")
        for step in (2, 3):
            await rt.approve(waiting.run_id, step, wait=False)
        done = await rt.approve(waiting.run_id, 4)
    assert done.status == "succeeded"
    events = await store.read_events(waiting.run_id)
    results = {e.step: e.data.get("reconciled") for e in events if e.type == ev.TOOL_RESULT}
    # Approved as the Policy asked, the third is then over the Tool's per_run quota.
    assert results == {2: None, 3: None, 4: "quota"}
    refused = await store.list_audit("default", kinds=["tool.refused", "policy.refused"])
    assert [(r.kind, r.body["step"]) for r in refused] == [("tool.refused", 4)]
