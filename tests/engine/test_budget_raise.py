"""A run stopped ``budget_exhausted`` is raised and goes on from the step it could not
afford: it ends with the answer of a run that never stopped, no recorded step is
performed again, its log stays gap-free and replays, and of two people raising it
at once exactly one reopens it. Real stores, the test model server over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import BudgetAddition
from agentrt.engine import events as ev
from agentrt.engine.budget_raise import reopen
from agentrt.errors import ConflictError, UsageError
from agentrt.models.testserver import ModelTestServer
from agentrt.spec.resources import Budgets
from agentrt.state import SqliteStore, Store
from tests.conftest import call, resources, rules

STEPS = rules(
    {"tool_calls": [call("add", a=1, b=2)]},
    {"tool_calls": [call("add", a=3, b=4)]},
    {"tool_calls": [call("add", a=5, b=6)]},
    {"content": "sums done: {last_tool_result}"},
)


def _bot(url: str, budgets: dict[str, Any] | None = None) -> list[Any]:
    return resources(url, tools=["add"], agent={"budgets": budgets or {}})


async def _reference(model_server: ModelTestServer, store: Store) -> tuple[str, int]:
    """The answer and model calls of a run that never stops."""
    async with Runtime(store) as rt:
        await rt.apply(_bot(model_server.url))
        result = await rt.run("bot", "add up")
    assert result.status == "succeeded", result
    return result.output or "", len(model_server.requests)


@pytest.mark.parametrize(
    ("budgets", "added"),
    [
        ({"max_tool_calls": 1}, BudgetAddition(tool_calls=5)),
        ({"max_tokens": 1}, BudgetAddition(tokens=1_000_000)),
    ],
    ids=["tool-calls", "tokens"],
)
async def test_a_raised_run_finishes_as_one_that_never_stopped(
    any_store: Store,
    model_server: ModelTestServer,
    budgets: dict[str, Any],
    added: BudgetAddition,
) -> None:
    model_server.set_rules(STEPS)
    expected, calls = await _reference(model_server, any_store)
    model_server.reset_log()
    async with Runtime(any_store) as rt:
        await rt.apply(_bot(model_server.url, budgets))
        stopped = await rt.run("bot", "add up")
        assert stopped.status == "budget_exhausted", stopped
        before = len(model_server.requests)
        raised = await rt.resume(stopped.run_id, add_budget=added, by="ops")
        replayed = await rt.replay(stopped.run_id)
    assert raised.status == "succeeded", raised
    assert raised.output == expected
    # Every model step was made once over both executions: none recorded was redone.
    assert len(model_server.requests) == calls and before < calls
    events = await any_store.read_events(stopped.run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    ends = [e.data["status"] for e in events if e.type == ev.RUN_FINISHED]
    assert ends == ["budget_exhausted", "succeeded"]
    [reopened] = [e for e in events if e.type == ev.RUN_REOPENED]
    assert reopened.data["by"] == "ops" and reopened.data["added"] == added.to_data()
    assert replayed.status == "succeeded" and replayed.output == expected
    [record] = [r for r in await any_store.list_audit("default") if r.kind == "run.reopened"]
    assert record.principal == "ops" and record.run_id == stopped.run_id


async def test_of_two_raising_a_run_at_once_one_reopens_it(
    any_store: Store, model_server: ModelTestServer
) -> None:
    model_server.set_rules(STEPS)
    async with Runtime(any_store) as rt:
        await rt.apply(_bot(model_server.url, {"max_tool_calls": 1}))
        stopped = await rt.run("bot", "add up")
        run = await any_store.get_run(stopped.run_id)
        assert run is not None and run.status == "budget_exhausted"
        more = BudgetAddition(tool_calls=5)
        outcomes = await asyncio.gather(
            *(reopen(any_store, run, more, by=f"ops{i}", now=run.created_at + i) for i in (1, 2)),
            return_exceptions=True,
        )
    conflicts = [o for o in outcomes if isinstance(o, ConflictError)]
    assert len(conflicts) == 1, outcomes
    assert "was written while it was being raised" in str(conflicts[0])
    events = await any_store.read_events(run.id)
    assert len([e for e in events if e.type == ev.RUN_REOPENED]) == 1
    again = await any_store.get_run(run.id)
    assert again is not None and again.status == "queued" and not again.finished


async def test_a_raise_that_would_stop_again_at_once_writes_nothing(
    any_store: Store, model_server: ModelTestServer
) -> None:
    model_server.set_rules(STEPS)
    async with Runtime(any_store) as rt:
        await rt.apply(_bot(model_server.url, {"max_tokens": 1}))
        stopped = await rt.run("bot", "add up")
        last = (await any_store.read_events(stopped.run_id))[-1].seq
        with pytest.raises(ConflictError, match=r"would stop again at once: budgets.max_tokens"):
            await rt.resume(stopped.run_id, add_budget=BudgetAddition(tool_calls=3))
        finished = await rt.run("bot", "add up", budgets=Budgets(max_tokens=10**9))
        assert finished.status == "succeeded"
        with pytest.raises(
            ConflictError, match="--add-budget raises a run stopped budget_exhausted"
        ):
            await rt.resume(finished.run_id, add_budget=BudgetAddition(tokens=5))
    assert (await any_store.read_events(stopped.run_id))[-1].seq == last


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens=ten", "tokens='ten' is not a whole number"),
        ("cost=-1", "cost adds to a limit, so it is at least 0"),
        ("money=3", "'money=3' is not one of tokens=..., cost=..., tool_calls=..., deadline=..."),
    ],
)
def test_a_bad_addition_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsageError) as refused:
        BudgetAddition.parse(text)
    assert message in str(refused.value)


def test_an_addition_raises_only_the_limits_a_run_has() -> None:
    raised = BudgetAddition.parse("tokens=100, cost=0.5,deadline=30").raised(
        Budgets(max_tokens=50, deadline_s=10)
    )
    assert (raised.max_tokens, raised.deadline_s, raised.max_cost_usd) == (150, 40, None)


async def test_a_raised_run_exported_and_imported_keeps_its_last_end(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(STEPS)
    async with Runtime(store) as rt:
        await rt.apply(_bot(model_server.url, {"max_tool_calls": 1}))
        stopped = await rt.run("bot", "add up")
        exported_stopped = await rt.export_run(stopped.run_id)
        await rt.resume(stopped.run_id, add_budget=BudgetAddition(tool_calls=5))
        exported = await rt.export_run(stopped.run_id)
        imported = await rt.import_run(exported)
        imported_stopped = await rt.import_run(exported_stopped)
        replayed = await rt.replay(imported.id)
    assert imported.status == "succeeded"
    assert imported_stopped.status == "budget_exhausted"
    assert replayed.status == "succeeded"
