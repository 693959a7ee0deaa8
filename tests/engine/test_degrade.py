"""An Agent with ``degrade``: while a tenant Budget has less than a fraction of a limit
left, each new model step asks only the cheapest Model of its chain (over real HTTP to
two test servers), reserves at its price, and records the decision with its intent; a
step resumed or replayed goes the way it recorded, whatever the Budget says by then."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.cli.render import Style, render_run_tree
from agentrt.engine import events as ev
from agentrt.engine.tenant_budgets import limits_of, model_reservation_id
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import BudgetSpec, parse_resource
from agentrt.state import SqliteStore
from agentrt.state.budget_ledger import NANO_USD, AccountDraft, Amount, NewReservation
from tests.conftest import call, resources, rules

ACCOUNT = "default/total@total"


@pytest.fixture
async def cheap() -> AsyncIterator[ModelTestServer]:
    """The cheap Model's own server."""
    async with ModelTestServer(rules({"content": "from cheap"})) as server:
        yield server


def _budget(limit_usd: float) -> Any:
    return parse_resource(
        {
            "apiVersion": "agentrt.dev/v1",
            "kind": "Budget",
            "metadata": {"name": "total"},
            "spec": {"period": "total", "max_cost_usd": limit_usd},
        }
    )


def _resources(
    primary: ModelTestServer, cheap: ModelTestServer, *, tools: list[str] | None = None
) -> list[Any]:
    """Model ``m`` (dear), its fallback ``cheap``, Agent ``bot`` degrading under half a
    Budget left, and a $1 Budget."""
    primary.set_rules(rules({"content": "from primary"}))
    return [
        *resources(
            primary.url,
            tools=tools,
            model={
                "fallbacks": ["cheap"],
                "max_output_tokens": 50,
                "pricing": {"input_per_mtok": 100.0, "output_per_mtok": 200.0},
            },
            extra_models={
                "cheap": {
                    "provider": "openai",
                    "base_url": cheap.url,
                    "max_retries": 0,
                    "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2},
                }
            },
            agent={"degrade": {"when_left_below": 0.5}},
        ),
        _budget(1.0),
    ]


async def _spend(store: SqliteStore, dollars: float) -> None:
    """What other runs of the tenant used: settled in the ledger, as theirs are."""
    limits = limits_of(BudgetSpec(period="total", max_cost_usd=1.0))
    rid = f"elsewhere:{dollars}"
    used = Amount(cost_nusd=int(dollars * NANO_USD))
    asked = NewReservation(rid, "elsewhere", used, (AccountDraft(ACCOUNT, "default", limits),))
    await store.reserve_budget(asked, now=1.0)
    assert await store.settle_budget(rid, used, now=2.0)


def _intent(events: list[Any], step: int = 1) -> dict[str, Any]:
    return next(e.data for e in events if e.type == ev.MODEL_CALL and e.step == step)


def _result(events: list[Any], step: int = 1) -> dict[str, Any]:
    return next(e.data for e in events if e.type == ev.MODEL_RESULT and e.step == step)


async def test_a_budget_running_low_sends_steps_to_the_cheapest_model(
    store: SqliteStore, model_server: ModelTestServer, cheap: ModelTestServer
) -> None:
    async with Runtime(store) as rt:
        await rt.apply(_resources(model_server, cheap))
        plenty = await rt.run("bot", "hello")
        await _spend(store, 0.6)  # 40% left: under the Agent's half
        low = await rt.run("bot", "hello again")
        assert (len(model_server.requests), len(cheap.requests)) == (1, 1)
        replayed = await rt.replay(low.run_id)
    assert (plenty.output, low.output, replayed.output) == ("from primary", *["from cheap"] * 2)
    assert (len(model_server.requests), len(cheap.requests)) == (1, 1)  # replay asked nobody
    first = await store.read_events(plenty.run_id)
    assert "degraded" not in _intent(first) and "via" not in _result(first)
    events = await store.read_events(low.run_id)
    decided = _intent(events)["degraded"]
    assert (decided["to"], decided["budget"], decided["limit"]) == (
        "cheap",
        ACCOUNT,
        "max_cost_usd",
    )
    assert decided["left"] == pytest.approx(0.4, abs=0.01)  # and what the first run spent
    assert _result(events)["via"] == "cheap"
    run = await store.get_run(low.run_id)
    assert run is not None
    tree = render_run_tree(run, events, Style())
    assert "├─ step 1  model cheap  " in tree
    assert (
        "│    degraded: budget default/total@total: max_cost_usd 40% left, only cheap asked" in tree
    )
    # Reserved at the cheap Model's price: the dear one's worst case is a thousand times more.
    held = await store.get_reservation(model_reservation_id(low.run_id, 1))
    dear = await store.get_reservation(model_reservation_id(plenty.run_id, 1))
    assert held is not None and dear is not None
    assert held.amount.cost_nusd * 500 < dear.amount.cost_nusd


async def test_a_recorded_decision_holds_on_resume_and_a_new_step_decides_again(
    store: SqliteStore, model_server: ModelTestServer, cheap: ModelTestServer, effects: Any
) -> None:
    pay = rules({"tool_calls": [call("charge_approved", amount=250)]}, {"content": "paid"})
    async with Runtime(store) as rt:
        await rt.apply(_resources(model_server, cheap, tools=["charge_approved"]))
        model_server.set_rules(pay)
        cheap.set_rules(pay)
        await _spend(store, 0.7)
        waiting = await rt.run("bot", "pay")  # step 1 degraded, then waits for approval
        assert waiting.status == "waiting_approval"
        await rt.apply([_budget(100.0)])  # plenty again
        await asyncio.sleep(1.05)  # a Budget applied reaches every step within a second
        done = await rt.approve(waiting.run_id, 2)
    assert done.output == "paid"
    events = await store.read_events(waiting.run_id)
    assert _intent(events, 1)["degraded"]["to"] == "cheap" and _result(events, 1)["via"] == "cheap"
    assert "degraded" not in _intent(events, 3) and "via" not in _result(events, 3)
    assert (len(model_server.requests), len(cheap.requests)) == (1, 1)


async def test_a_step_stopped_midway_resumes_the_way_it_recorded(
    store: SqliteStore, model_server: ModelTestServer, cheap: ModelTestServer
) -> None:
    cheap.chunk_delay_s = 0.3
    async with Runtime(store) as rt:
        await rt.apply(_resources(model_server, cheap))
        cheap.set_rules(rules({"content": "from cheap after all"}))
        await _spend(store, 0.8)
        run = await rt.submit("bot", "tell me", start=False)
        with rt.live.listen(run.id) as feed:  # a listener: the step's intent is written first
            task = asyncio.create_task(rt.resume(run.id))
            await asyncio.wait_for(feed.ready(), 10)
        # The process stops while the cheap Model's reply is half written.
    with pytest.raises(asyncio.CancelledError):
        await task
    log = await store.read_events(run.id)
    assert [e.type for e in log if e.step == 1] == ["model.call"]
    assert _intent(log)["degraded"]["to"] == "cheap"
    cheap.chunk_delay_s = 0.0
    async with Runtime(store) as rt:
        await rt.apply(
            [_budget(100.0)]
        )  # no longer low: the step goes the recorded way all the same
        result = await rt.resume(run.id)
    assert result.output == "from cheap after all"
    assert len(model_server.requests) == 0 and len(cheap.requests) == 2
    assert _result(await store.read_events(run.id))["via"] == "cheap"
