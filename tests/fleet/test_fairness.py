"""Fair shares and exact limits on a fleet: two worker processes on one store (SQLite
and PostgreSQL) give two tenants of equal weight, both with more work than the
fleet's slots, half of the completed steps each; and a tenant's ``max_running``
holds across both workers, never passed even for a moment."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.state import Store
from tests.conftest import most_at_once, resources, rules, tenant_resource

from .harness import Fleet, settled

pytestmark = pytest.mark.slow

SLOTS = 2  # each worker's


async def _queue(url: str, model_url: str, counts: dict[str, int], *extra: Any) -> list[str]:
    async with Runtime(url, resume_interrupted=False, notice_cancels=False) as rt:
        await rt.apply(list(extra))
        for tenant in counts:
            await rt.apply(resources(model_url, namespace=tenant))
        return [(await rt.submit("bot", f"q{i}", namespace=t, start=False)).id
                for t, n in counts.items() for i in range(n)]  # fmt: skip


async def test_two_tenants_share_a_fleets_steps_evenly(fleet_url: str, tmp_path: Path) -> None:
    async with ModelTestServer(rules({"content": "done"}), latency_s=0.1) as server:
        # All of a's queries are older than b's: first-come would serve a alone.
        await _queue(fleet_url, server.url, {"a": 200, "b": 200})
        fleet = Fleet.on(fleet_url, tmp_path)
        workers = [fleet.start(name, concurrency=SLOTS) for name in ("w1", "w2")]
        try:
            await asyncio.gather(*(w.serving() for w in workers))
            opened = time.time() + 1.0  # both claim from here on
            await asyncio.sleep(8.0)
            closed = time.time()
            fleet.stop_all()
            async with Store.from_url(fleet_url) as store:
                steps = Counter[str]()
                for run in await store.list_runs(limit=1000):
                    for e in await store.read_events(run.id):
                        if e.type == ev.MODEL_RESULT and opened <= e.ts <= closed:
                            steps[run.namespace] += 1
        finally:
            fleet.stop_all()
    total = steps["a"] + steps["b"]
    assert 20 <= total < 400, steps  # the window saw real work, and both had more
    assert 0.45 <= steps["a"] / total <= 0.55, steps


async def test_a_tenants_max_running_holds_across_the_fleet(fleet_url: str, tmp_path: Path) -> None:
    async with ModelTestServer(rules({"content": "done"}), latency_s=0.2) as server:
        ids = await _queue(
            fleet_url, server.url, {"acme": 24}, tenant_resource("acme", max_running=3)
        )
        fleet = Fleet.on(fleet_url, tmp_path)
        workers = [fleet.start(name, concurrency=8) for name in ("w1", "w2")]
        try:
            async with Store.from_url(fleet_url) as store:
                runs = await settled(store, ids, timeout=120)
                logs = {run_id: await store.read_events(run_id) for run_id in ids}
        finally:
            fleet.stop_all()
    assert {run.status for run in runs.values()} == {"succeeded"}
    spans = [
        (min(e.ts for e in log if e.type == ev.RUN_STARTED),
         max(e.ts for e in log if e.type == ev.RUN_FINISHED))
        for log in logs.values()
    ]  # fmt: skip
    assert most_at_once(spans) == 3, spans
    owners = {e.data["owner"] for log in logs.values() for e in log if e.type == ev.RUN_STARTED}
    assert len(owners) == 2, owners  # both workers took runs
    assert all(w.proc.poll() is not None for w in workers)
