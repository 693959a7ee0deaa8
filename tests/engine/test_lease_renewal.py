"""Lease renewal: one store write renews every lease a worker holds, and a run
whose own last write ended its lease is left to finish, not taken for lost."""

from __future__ import annotations

import asyncio
from typing import Any

from agentrt import Runtime
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import resources, rules

FINISHING_S = 1.0


async def slow_finish(ctx: Any, result: Any) -> None:
    """An ``on_finish`` hook that takes a while, after the run's lease has ended."""
    await asyncio.sleep(FINISHING_S)


async def test_a_run_finishing_after_its_last_append_is_not_taken_for_lost(
    model_server: ModelTestServer, tmp_path: Any
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    agent = {"hooks": {"on_finish": f"{__name__}:slow_finish"}}
    # Renewals every 0.2 s: several fall in the hook's second, after the run's
    # terminal append released its lease.
    async with Runtime(tmp_path / "s.db", resume_interrupted=False, lease_ttl_s=0.6) as rt:
        await rt.apply(resources(model_server.url, agent=agent))
        result = await rt.run("bot", "hello")
    assert result.status == "succeeded" and result.output == "done"


async def test_one_write_renews_every_lease_a_worker_holds(
    model_server: ModelTestServer, tmp_path: Any
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.inject_delay(1.5, count=20)
    renewals: list[int] = []
    async with await SqliteStore.open(tmp_path / "s.db") as store:
        renew = store.renew_leases

        async def counted(run_ids: Any, *args: Any, **kwargs: Any) -> set[str]:
            renewals.append(len(run_ids))
            return await renew(run_ids, *args, **kwargs)

        store.renew_leases = counted  # type: ignore[method-assign]
        async with Runtime(store, resume_interrupted=False, lease_ttl_s=0.9) as rt:
            await rt.apply(resources(model_server.url))
            results = await asyncio.gather(*(rt.run("bot", f"q{i}") for i in range(20)))
    assert all(r.status == "succeeded" for r in results)
    # Each round renews all 20 executions in one call, not one call per run.
    assert renewals and max(renewals) == 20, renewals
