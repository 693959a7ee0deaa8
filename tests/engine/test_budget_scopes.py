"""Budgets of one Agent, of each session, and a child run's parent's limits: each held in
the store's ledger with the tenant's, over real HTTP to the test model server, on
both stores."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.errors import BudgetExhausted
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import ScriptedRule, parse_resource
from agentrt.spec.resources import Resource
from agentrt.state.base import Store
from tests.conftest import call, resources, rules


def _doc(kind: str, name: str, spec: dict[str, Any]) -> Resource:
    return parse_resource(
        {"apiVersion": "agentrt.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )


def _budget(name: str, **spec: Any) -> Resource:
    return _doc("Budget", name, {"period": "day", **spec})


def _day() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def _adder(url: str) -> list[Resource]:
    """Agents ``bot`` and ``other``, each with the ``add`` tool."""
    docs = resources(url, tools=["add"])
    return [*docs, _doc("Agent", "other", {"model": "m", "tools": ["add"]})]


ADD_THEN_ANSWER = rules({"tool_calls": [call("add", a=1, b=2)]}, {"content": "{last_tool_result}"})


async def _reason(store: Store, run_id: str) -> str:
    run = await store.get_run(run_id)
    assert run is not None and run.reason is not None
    return run.reason


async def test_a_budget_of_one_agent_limits_only_its_runs(
    any_store: Store, model_server: ModelTestServer
) -> None:
    model_server.set_rules(ADD_THEN_ANSWER)
    async with Runtime(any_store) as rt:
        await rt.apply([*_adder(model_server.url), _budget("bots", agent="bot", max_tool_calls=1)])
        first = await rt.run("bot", "sum one")
        second = await rt.run("bot", "sum two")
        others = [await rt.run("other", f"sum {i}") for i in range(3)]
    assert first.status == "succeeded", first.reason
    assert second.status == "budget_exhausted"
    assert f"budget default/bots@{_day()}: max_tool_calls=1 would be passed by 1" in (
        await _reason(any_store, second.run_id)
    )
    assert [r.status for r in others] == ["succeeded"] * 3  # another Agent draws nothing on it
    [account] = await any_store.budget_accounts("default")
    assert (account.key, account.used.tool_calls) == (f"default/bots@{_day()}", 1)


async def test_a_budget_per_session_gives_each_session_its_own_account(
    any_store: Store, model_server: ModelTestServer
) -> None:
    model_server.set_rules(ADD_THEN_ANSWER)
    budgets = [
        _budget("per-chat", per="session", max_tool_calls=1),
        _budget("all", max_tool_calls=3),
    ]
    async with Runtime(any_store) as rt:
        await rt.apply([*_adder(model_server.url), *budgets])
        s1 = await rt.run("bot", "sum one", session="s1")
        s1_again = await rt.run("bot", "sum two", session="s1")
        s2 = await rt.run("bot", "sum three", session="s2")
        alone = await rt.run("bot", "sum four")  # in no session: only the tenant's
        s3 = await rt.run("bot", "sum five", session="s3")  # its own has room, the tenant's not
    assert [s1.status, s2.status, alone.status] == ["succeeded"] * 3
    day = _day()
    assert s1_again.status == "budget_exhausted"
    assert f"budget default/per-chat@{day}/session:s1: max_tool_calls=1 would be passed" in (
        await _reason(any_store, s1_again.run_id)
    )
    assert s3.status == "budget_exhausted"
    assert f"budget default/all@{day}: max_tool_calls=3 would be passed by 1" in (
        await _reason(any_store, s3.run_id)
    )
    used = {a.key: a.used.tool_calls for a in await any_store.budget_accounts("default")}
    assert used == {
        f"default/all@{day}": 3,
        f"default/per-chat@{day}/session:s1": 1,
        f"default/per-chat@{day}/session:s2": 1,
        f"default/per-chat@{day}/session:s3": 0,
    }


async def test_admission_names_the_agent_or_session_budget_it_refuses_by(
    any_store: Store, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "fine"}))
    async with Runtime(any_store) as rt:
        await rt.apply(
            [
                *_adder(model_server.url),
                _budget("bots", agent="bot", max_input_tokens=5),
                _budget("chats", per="session", agent="other", max_input_tokens=5),
            ]
        )
        with pytest.raises(BudgetExhausted) as refused:
            await rt.submit("bot", "hello there")
        assert f"query refused: budget default/bots@{_day()}: max_input_tokens=5" in str(
            refused.value
        )
        with pytest.raises(BudgetExhausted) as refused:
            await rt.submit("other", "hello there", session="s9")
        assert f"budget default/chats@{_day()}/session:s9: max_input_tokens=5" in str(refused.value)
        # Outside a session, and for no Budget's Agent, nothing refuses it.
        result = await rt.run("other", "hello there")
    assert result.status == "succeeded", result.reason


CHILD_ADDS_THREE_TIMES = [
    ScriptedRule.model_validate(
        {
            "match": "^plan",
            "steps": [
                {
                    "tool_calls": [
                        call("researcher", input="find a"),
                        call("researcher", input="find b"),
                    ]
                },
                {"content": "done"},
            ],
        }
    ),
    ScriptedRule.model_validate(
        {
            "match": "^find",
            "steps": [
                {"tool_calls": [call("add", a=1, b=1)]},
                {"tool_calls": [call("add", a=2, b=2)]},
                {"tool_calls": [call("add", a=3, b=3)]},
                {"content": "child done"},
            ],
        }
    ),
]


def _lead(url: str, budgets: dict[str, Any]) -> list[Resource]:
    return [
        *resources(url, tools=["add"]),
        _doc("Agent", "child", {"model": "m", "tools": ["add"]}),
        _doc(
            "Tool",
            "researcher",
            {"kind": "agent", "agent": {"agent": "child", "budget_share": 1.0}},
        ),
        _doc("Agent", "lead", {"model": "m", "tools": ["researcher"], "budgets": budgets}),
    ]


async def test_children_of_one_turn_never_spend_more_than_their_parent_had_left(
    any_store: Store, model_server: ModelTestServer
) -> None:
    model_server.set_rules(CHILD_ADDS_THREE_TIMES)
    async with Runtime(any_store) as rt:
        await rt.apply(_lead(model_server.url, {"max_tool_calls": 4}))
        result = await rt.run("lead", "plan it")
    parent = await any_store.get_run(result.run_id)
    assert parent is not None
    # Each child alone may make 4 calls (all the parent had left); together they get
    # what is left after the turn's own 2 calls: 2.
    assert parent.usage.tool_calls <= 4, parent.usage
    children = [r for r in await any_store.list_runs(limit=100) if r.parent_run == parent.id]
    assert len(children) == 2
    assert sum(c.usage.tool_calls for c in children) == 2
    stopped = [c for c in children if c.status == "budget_exhausted"]
    assert stopped, [c.status for c in children]
    for child in stopped:
        assert child.reason is not None
        assert f"budget default/run:{parent.id}@2: max_tool_calls=2 would be passed by 1" in (
            child.reason
        )
    [account] = await any_store.budget_accounts("default")
    assert (account.key, account.used.tool_calls, account.held.tool_calls) == (
        f"default/run:{parent.id}@2",
        2,
        0,
    )


async def test_a_teams_nodes_never_spend_more_than_the_team_may(
    any_store: Store, model_server: ModelTestServer
) -> None:
    model_server.set_rules(CHILD_ADDS_THREE_TIMES[1:])
    team = _doc(
        "Team",
        "pair",
        {
            "budgets": {"max_tool_calls": 4},
            "concurrency": 2,
            "entry": ["a", "b"],
            "nodes": [
                {"name": "a", "agent": "child", "input": "find a"},
                {"name": "b", "agent": "child", "input": "find b"},
            ],
        },
    )
    async with Runtime(any_store) as rt:
        await rt.apply([*_lead(model_server.url, {}), team])
        result = await rt.run("pair", "go")
        replayed = await rt.replay(result.run_id)
    children = [r for r in await any_store.list_runs(limit=100) if r.parent_run == result.run_id]
    # Each node's Agent alone may make its 3 calls; together they may make the team's 4.
    assert sum(c.usage.tool_calls for c in children) == 4, [c.usage for c in children]
    reasons = [c.reason or "" for c in children if c.status == "budget_exhausted"]
    assert reasons and all(
        f"budget default/run:{result.run_id}: max_tool_calls=4 would be passed by 1" in r
        for r in reasons
    ), reasons
    # It is the team's limit that was reached: the team stops there, naming it, and a
    # replay arrives at the same end (the refused step was never recorded).
    assert result.status == "budget_exhausted", result.reason
    assert f"budget default/run:{result.run_id}: max_tool_calls=4" in (result.reason or "")
    assert replayed.status == "budget_exhausted"


async def test_a_turns_children_draw_on_its_sessions_budget(
    any_store: Store, model_server: ModelTestServer
) -> None:
    model_server.set_rules(CHILD_ADDS_THREE_TIMES)
    async with Runtime(any_store) as rt:
        await rt.apply(
            [*_lead(model_server.url, {}), _budget("chats", per="session", max_tool_calls=3)]
        )
        result = await rt.run("lead", "plan it", session="s1")
    children = [r for r in await any_store.list_runs(limit=100) if r.parent_run == result.run_id]
    # The turn's own two calls, then one of its children's: the session's three.
    assert sum(c.usage.tool_calls for c in children) == 1, [c.usage for c in children]
    key = f"default/chats@{_day()}/session:s1"
    assert any(f"budget {key}: max_tool_calls=3 would be passed by 1" in (c.reason or "")
               for c in children), [c.reason for c in children]  # fmt: skip
    [account] = await any_store.budget_accounts("default")
    assert (account.key, account.used.tool_calls, account.held.tool_calls) == (key, 3, 0)
