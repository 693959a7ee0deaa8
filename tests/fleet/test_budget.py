"""No overspend: 100 queued runs on two worker processes share a tenant's $1.00 Budget
(and a token Budget, and one of tool calls): together they never pass any, the ledger counts exactly what
the runs' logs record, and every run that stopped says which limit stopped it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import parse_resource
from agentrt.state import Store
from agentrt.state.budget_ledger import NANO_USD, nano_usd
from tests.conftest import call, resources, rules

from .harness import Fleet, settled

pytestmark = pytest.mark.slow

RUNS = 100
MAX_TOKENS = 40_000
MAX_TOOL_CALLS = 12  # fewer than the runs would make within the dollars
# Dear enough that $1.00 pays for a few dozen steps of the 200 the runs would take.
MODEL = {"max_output_tokens": 40, "pricing": {"input_per_mtok": 300.0, "output_per_mtok": 600.0}}
SCRIPT = rules(
    {"tool_calls": [call("add", a=2, b=3)]}, {"content": "the sum is {last_tool_result}"}
)


def _budget(name: str, **spec: Any) -> Any:
    return parse_resource(
        {"apiVersion": "agentrt.dev/v1", "kind": "Budget", "metadata": {"name": name},
         "spec": {"period": "month", **spec}}
    )  # fmt: skip


async def test_runs_on_two_workers_never_pass_the_tenants_budgets(
    fleet_url: str, tmp_path: Path
) -> None:
    async with ModelTestServer(SCRIPT, latency_s=0.05) as server:
        async with Runtime(fleet_url, resume_interrupted=False, notice_cancels=False) as rt:
            await rt.apply(
                [*resources(server.url, tools=["add"], model=MODEL),
                 _budget("dollars", max_cost_usd=1.0), _budget("tokens", max_tokens=MAX_TOKENS),
                 _budget("calls", max_tool_calls=MAX_TOOL_CALLS)]
            )  # fmt: skip
            ids = [(await rt.submit("bot", f"q{i}", start=False)).id for i in range(RUNS)]
        fleet = Fleet.on(fleet_url, tmp_path)
        workers = [fleet.start(name, concurrency=50) for name in ("a", "b")]
        try:
            await asyncio.gather(*(w.serving() for w in workers))
            async with Store.from_url(fleet_url) as store:
                runs = await settled(store, ids, timeout=180)
                logs = {i: await store.read_events(i) for i in ids}
                accounts = {a.key.split("@")[0]: a for a in await store.budget_accounts("default")}
        finally:
            fleet.stop_all()
    statuses = {r.status for r in runs.values()}
    # Which runs get through is a race: under load every first step may be taken before
    # any second one, and then none succeeds. That all stay within the Budgets is not.
    assert "budget_exhausted" in statuses, statuses
    assert statuses <= {"succeeded", "budget_exhausted"}, statuses
    results = [e for log in logs.values() for e in log if e.type == ev.MODEL_RESULT]
    dollars, tokens = accounts["default/dollars"], accounts["default/tokens"]
    assert dollars.held.cost_nusd == 0 and tokens.held.tokens == 0
    assert dollars.used.cost_nusd <= 1 * NANO_USD
    assert tokens.used.tokens <= MAX_TOKENS
    # The ledger is exactly what the logs record, and each run's row agrees with its log.
    assert dollars.used.cost_nusd == sum(nano_usd(float(e.data["cost"])) for e in results)
    recorded = sum(int(e.data["in"]) + int(e.data["out"]) for e in results)
    assert tokens.used.tokens == recorded
    assert sum(r.usage.total_tokens for r in runs.values()) == recorded
    calls = accounts["default/calls"]
    intents = [e for log in logs.values() for e in log if e.type == ev.TOOL_CALL]
    assert calls.held.tool_calls == 0 and calls.used.tool_calls <= MAX_TOOL_CALLS
    assert calls.used.tool_calls == len(intents) == sum(r.usage.tool_calls for r in runs.values())
    stopped_by = set()
    for run in runs.values():
        if run.status == "budget_exhausted":
            assert run.reason is not None and "would be passed by" in run.reason, run.reason
            stopped_by |= {
                b for b in ("dollars", "tokens", "calls") if f"default/{b}@" in run.reason
            }
    assert "calls" in stopped_by, stopped_by
    for worker in workers:
        assert "Traceback" not in worker.said(), worker.said()
