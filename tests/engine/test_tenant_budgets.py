"""A tenant's Budget, over real HTTP to the test model server: each model step holds its
worst case in the store's ledger before the call and settles to what it recorded, so
runs together never pass the Budget, the ledger equals what their logs record, and a
run that cannot reserve its next step stops ``budget_exhausted`` naming the limit."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.engine.tenant_budgets import budget_accounts, model_reservation_id
from agentrt.errors import BudgetExhausted
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import parse_resource
from agentrt.state import SqliteStore
from agentrt.state.budget_ledger import Amount, BudgetRefusal, NewReservation, nano_usd
from tests.conftest import call, resources, rules

LIMIT_USD = 0.0005


def _budget(limit_usd: float = LIMIT_USD) -> object:
    return parse_resource(
        {
            "apiVersion": "agentrt.dev/v1",
            "kind": "Budget",
            "metadata": {"name": "monthly"},
            "spec": {"period": "month", "max_cost_usd": limit_usd},
        }
    )


async def _recorded_cost(store: SqliteStore, run_ids: list[str]) -> int:
    """What the runs' logs record they spent, in the ledger's units."""
    total = 0
    for run_id in run_ids:
        for event in await store.read_events(run_id):
            if event.type == ev.MODEL_RESULT:
                total += nano_usd(float(event.data.get("cost", 0.0)))
    return total


async def test_runs_sharing_a_budget_never_pass_it_and_the_ledger_equals_their_logs(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "fine"}))
    async with Runtime(store) as rt:
        # A step costs about $0.00003 and holds up to $0.0003: some fit, the others must stop.
        await rt.apply([*resources(model_server.url, model={"max_output_tokens": 100}), _budget()])
        results = await asyncio.gather(*(rt.run("bot", f"hello {i}") for i in range(30)))
    statuses = [r.status for r in results]
    assert "succeeded" in statuses and "budget_exhausted" in statuses, statuses
    stopped = [r for r in results if r.status == "budget_exhausted"]
    window = time.strftime("%Y-%m", time.gmtime())
    for result in stopped:
        run = await store.get_run(result.run_id)
        assert run is not None and run.reason is not None
        assert f"budget default/monthly@{window}: max_cost_usd=0.0005 would be passed by $" in (
            run.reason
        )
        assert run.usage.model_calls == 0  # refused before the call, not after
    [account] = await store.budget_accounts("default")
    assert account.held.cost_nusd == 0
    assert account.used.cost_nusd <= nano_usd(LIMIT_USD)
    assert account.used.cost_nusd == await _recorded_cost(store, [r.run_id for r in results])
    assert account.used.cost_nusd > 0
    # Every request the model server answered was reserved first, its output capped.
    assert all(r.get("max_tokens") == 100 for r in model_server.requests)


async def test_a_step_without_a_max_output_is_capped_while_a_budget_limits_cost(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "fine"}))
    async with Runtime(store) as rt:
        await rt.apply([*resources(model_server.url), _budget(1.0)])
        result = await rt.run("bot", "hello")
    assert result.status == "succeeded"
    assert model_server.requests[-1]["max_tokens"] == 4096


async def test_without_a_budget_nothing_is_reserved(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "fine"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        result = await rt.run("bot", "hello")
    assert result.status == "succeeded"
    assert await store.budget_accounts("default") == []
    assert "max_tokens" not in model_server.requests[-1]


async def test_a_query_its_budget_has_no_room_for_is_refused_before_it_starts(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "fine"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        first = await rt.submit("bot", "hello", idempotency_key="k1")
        await rt.wait(first.id)
        # Less than reading its instructions and input would cost ($1 per million bytes).
        await rt.apply([_budget(0.000001)])
        before = await store.list_runs(limit=1000)
        with pytest.raises(BudgetExhausted) as refused:
            await rt.submit("bot", "one more")
        assert "query refused: budget default/monthly@" in str(refused.value)
        assert "max_cost_usd=1e-06 would be passed by $" in str(refused.value)
        assert await store.list_runs(limit=1000) == before  # nothing was created
        # A retry of a query created before gets its run back, whatever the Budget says.
        again = await rt.submit("bot", "hello", idempotency_key="k1")
        assert again.id == first.id


async def test_runs_sharing_a_budget_of_tool_calls_never_make_more(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        rules({"tool_calls": [call("add", a=1, b=2)]}, {"content": "{last_tool_result}"})
    )
    calls = parse_resource(
        {"apiVersion": "agentrt.dev/v1", "kind": "Budget", "metadata": {"name": "calls"},
         "spec": {"period": "day", "max_tool_calls": 4}}
    )  # fmt: skip
    async with Runtime(store) as rt:
        await rt.apply([*resources(model_server.url, tools=["add"]), calls])
        results = await asyncio.gather(*(rt.run("bot", f"sum {i}") for i in range(10)))
    made = [r for r in results if r.usage.tool_calls]
    stopped = [r for r in results if r.status == "budget_exhausted"]
    assert len(made) == 4 and len(stopped) == 6, [r.status for r in results]
    for result in stopped:
        run = await store.get_run(result.run_id)
        assert run is not None and run.reason is not None
        assert "max_tool_calls=4 would be passed by 1" in run.reason, run.reason
    [account] = await store.budget_accounts("default")
    assert (account.used.tool_calls, account.held.tool_calls) == (4, 0)
    # A Budget of tool calls only leaves model calls as they were: not capped.
    assert all("max_tokens" not in r for r in model_server.requests)


async def test_a_step_waiting_on_a_queued_runs_hold_gives_its_slot_up(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    """The run holding what a waiting step needs may itself be queued (its execution
    stopped: a lost lease, a drain): a worker whose every slot waits would never claim
    it. A waiting step takes no slot, so the holder is claimed and both finish."""
    model_server.set_rules(rules({"content": "fine"}))
    tokens = parse_resource(
        {"apiVersion": "agentrt.dev/v1", "kind": "Budget", "metadata": {"name": "tokens"},
         "spec": {"period": "day", "max_tokens": 10_000}}
    )  # fmt: skip
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply([*resources(model_server.url, model={"max_output_tokens": 100}), tokens])
        waiter = await rt.submit("bot", "first", start=False)
        holder = await rt.submit("bot", "second", start=False)
        # The holder's first step reserved before its execution stopped: nearly all.
        accounts = await budget_accounts(store, "default", time.time())
        rid = model_reservation_id(holder.id, 1)
        held = NewReservation(rid, holder.id, Amount(9_950, 0, 0, 0), accounts)
        assert not isinstance(await store.reserve_budget(held, now=time.time()), BudgetRefusal)
        serving = rt.serving(concurrency=1, poll_s=0.1)  # one slot: the waiter's
        served = asyncio.create_task(serving.run(grace_s=1.0))
        try:
            results = await asyncio.wait_for(
                asyncio.gather(rt.wait(waiter.id), rt.wait(holder.id)), timeout=30
            )
        finally:
            serving.drain()
            await served
    assert [r.status for r in results] == ["succeeded", "succeeded"], results
    [account] = await store.budget_accounts("default")
    assert account.held.tokens == 0 and 0 < account.used.tokens <= 10_000
