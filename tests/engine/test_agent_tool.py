"""An Agent used as a tool: a child run with its own trace and a share of the budget."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import Budgets, ScriptedRule, parse_resource
from agentrt.state import TERMINAL_STATUSES, SqliteStore
from tests.conftest import call, resources, rules

RULES = [
    ScriptedRule.model_validate(
        {
            "match": "^plan",
            "steps": [
                {"tool_calls": [call("researcher", input="find the sum")]},
                {"content": "parent got: {last_tool_result}"},
            ],
        }
    ),
    ScriptedRule.model_validate(
        {
            "match": "^find",
            "steps": [
                {"tool_calls": [call("add", a=20, b=22)]},
                {"content": "child says {last_tool_result}"},
            ],
        }
    ),
]


def _team(url: str) -> list[Any]:
    docs = resources(url, tools=["add"], agent={"budgets": {"max_tokens": 100000}})
    extra = [
        {
            "kind": "Agent",
            "metadata": {"name": "child"},
            "spec": {"model": "m", "instructions": "You research.", "tools": ["add"]},
        },
        {
            "kind": "Tool",
            "metadata": {"name": "researcher"},
            "spec": {"kind": "agent", "agent": {"agent": "child", "budget_share": 0.5}},
        },
        {
            "kind": "Agent",
            "metadata": {"name": "lead"},
            "spec": {
                "model": "m",
                "tools": ["researcher"],
                "budgets": {"max_tokens": 10000, "max_tool_calls": 8},
            },
        },
    ]
    return docs + [parse_resource({"apiVersion": "agentrt.dev/v1", **d}) for d in extra]


async def test_agent_tool_runs_a_child_with_a_share_of_the_budget(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(RULES)
    async with Runtime(store) as rt:
        await rt.apply(_team(model_server.url))
        result = await rt.run("lead", "plan it")
        served = len(model_server.requests)
        replayed = await rt.replay(result.run_id)
    assert result.output == "parent got: child says 42"
    assert len(model_server.requests) == served == 4  # replay re-ran neither parent nor child
    assert replayed.output == result.output and replayed.usage == result.usage

    children = [r for r in await store.list_runs() if r.parent_run == result.run_id]
    assert len(children) == 1
    child = children[0]
    assert child.agent == "child" and child.status == "succeeded"
    child_events = await store.read_events(child.id)
    spec = child_events[0].data["spec"]
    # Half of what the parent had left when it called: 10000 tokens minus its first call.
    parent_first = next(
        e for e in await store.read_events(result.run_id) if e.type == ev.MODEL_RESULT
    )
    assert (
        spec["budgets"]["max_tokens"]
        == (10000 - parent_first.data["in"] - parent_first.data["out"]) // 2
    )
    assert spec["budgets"]["max_tool_calls"] == (8 - 0) // 2
    # The child's consumption is the parent's too.
    parent = await store.get_run(result.run_id)
    assert parent is not None
    assert parent.usage.model_calls == 2 + child.usage.model_calls
    assert parent.usage.total_tokens > child.usage.total_tokens > 0
    tool_result = next(
        e for e in await store.read_events(result.run_id) if e.type == ev.TOOL_RESULT
    )
    assert tool_result.data["trace"]["child_run"] == child.id


async def test_a_repeated_call_finds_the_same_child(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(RULES)
    async with Runtime(store) as rt:
        await rt.apply(_team(model_server.url))
        first = await rt.run("lead", "plan it")
        child = next(r for r in await store.list_runs() if r.parent_run == first.run_id)
        # The same key (run:step:call) submits nothing new.
        again = await rt.submit("child", "find the sum", idempotency_key=child.idempotency_key)
    assert again.id == child.id


# --- an agent that is its own agent tool ------------------------------------------

# Each run calls itself twice on each of three steps: without bounds, without end.
AGAIN = rules(*[{"tool_calls": [call("again", input="deeper"), call("again", input="deeper")]}] * 3)


def _recursive(url: str, budgets: dict[str, Any] | None = None) -> list[Any]:
    docs = [
        {
            "kind": "Agent",
            "metadata": {"name": "looper"},
            "spec": {"model": "m", "tools": ["again"], "budgets": budgets or {}},
        },
        {
            "kind": "Tool",
            "metadata": {"name": "again"},
            "spec": {"kind": "agent", "agent": {"agent": "looper"}},
        },
    ]
    return resources(url) + [parse_resource({"apiVersion": "agentrt.dev/v1", **d}) for d in docs]


async def _runs(store: SqliteStore) -> list[Any]:
    return await store.list_runs(limit=100_000)


async def test_an_agent_that_calls_itself_is_bounded_by_default(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(AGAIN)
    async with Runtime(store) as rt:
        await rt.apply(_recursive(model_server.url))
        root = await asyncio.wait_for(rt.run("looper", "go"), 120)
    runs = await _runs(store)
    assert root.status in TERMINAL_STATUSES
    assert all(r.status in TERMINAL_STATUSES for r in runs)
    # The root and at most budgets.max_child_runs (100) children, all levels together.
    assert 1 < len(runs) <= 101
    assert root.child_runs == len(runs) - 1
    refused = [r for r in runs if "budgets.max_child_runs" in (r.reason or "")]
    assert refused and all(r.status == "budget_exhausted" for r in refused)


async def test_max_depth_bounds_how_deep_agent_tools_nest(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(AGAIN)
    async with Runtime(store) as rt:
        await rt.apply(_recursive(model_server.url, {"max_depth": 1, "max_child_runs": None}))
        root = await asyncio.wait_for(rt.run("looper", "go"), 120)
    children = [r for r in await _runs(store) if r.id != root.run_id]
    # Three steps of two calls each; every child is one level down and may go no deeper.
    assert root.status == "succeeded" and root.child_runs == 6
    assert len(children) == 6
    assert all(r.parent_run == root.run_id for r in children)
    assert all(r.status == "budget_exhausted" for r in children)
    assert all("budgets.max_depth reached" in (r.reason or "") for r in children)
    assert "budget_exhausted: budgets.max_depth reached" in (root.output or "")


async def test_max_child_runs_counts_every_level_and_a_query_may_lower_it(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(AGAIN)
    async with Runtime(store) as rt:
        await rt.apply(_recursive(model_server.url))
        root = await asyncio.wait_for(
            rt.run("looper", "go", budgets=Budgets(max_child_runs=2)), 120
        )
        replayed = await rt.replay(root.run_id)
    # Two children (with nothing left to start theirs), then the third call is refused.
    assert root.status == "budget_exhausted"
    assert root.reason == (
        "budgets.max_child_runs=2 would be exceeded (2 child runs started, theirs included; "
        "2 more requested)"
    )
    assert len(await _runs(store)) == 3 and root.child_runs == 2
    assert replayed == root


async def test_a_child_run_routes_by_its_parents_query_tags(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    """The child Agent routes ``legal`` queries to Model ``large``: a child of a query
    tagged ``legal`` goes there, though only its parent's query carried the tag."""
    model_server.set_rules(RULES)
    async with ModelTestServer(rules({"content": "the large one's answer"})) as large:
        docs = _team(model_server.url)
        routed = {
            "kind": "Agent",
            "metadata": {"name": "child"},
            "spec": {"model": "m", "instructions": "You research.", "tools": ["add"],
                     "routing": {"rules": [{"when": {"tags": ["legal"]}, "model": "large"}]}},
        }  # fmt: skip
        extra = {"kind": "Model", "metadata": {"name": "large"},
                 "spec": {"provider": "openai", "base_url": large.url, "max_retries": 0}}  # fmt: skip
        docs = [d for d in docs if not (d.kind == "Agent" and d.metadata.name == "child")]
        docs += [parse_resource({"apiVersion": "agentrt.dev/v1", **d}) for d in (routed, extra)]
        async with Runtime(store) as rt:
            await rt.apply(docs)
            tagged = await rt.run("lead", "plan it", tags=["legal"])
            plain = await rt.run("lead", "plan it")
    assert tagged.output == "parent got: the large one's answer"
    assert plain.output == "parent got: child says 42"
    child = next(r for r in await store.list_runs() if r.parent_run == tagged.run_id)
    assert (await store.read_events(child.id))[0].data["spec"]["tags"] == ["legal"]
