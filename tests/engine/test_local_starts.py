"""A run its own process starts (``Runtime.run``, ``agentrt run`` without ``--queue``)
goes through the scheduler too: the limits of runs at once hold for it in one
process and across processes on one store, priority orders the runs held back,
a serving process's runs wait for its slots, and a run held back can be
cancelled (over real HTTP to the test model server, on SQLite)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.engine.queue_places import places_of
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import most_at_once, resources, rules, tenant_resource

pytestmark = pytest.mark.slow


async def _span(store: SqliteStore, run_id: str) -> tuple[float, float]:
    """When the run started (its first ``run.started``) and finished."""
    events = await store.read_events(run_id)
    started = min(e.ts for e in events if e.type == ev.RUN_STARTED)
    finished = max(e.ts for e in events if e.type == ev.RUN_FINISHED)
    return started, finished


async def _until_status(store: SqliteStore, run_id: str, status: str) -> None:
    deadline = time.monotonic() + 15
    while (run := await store.get_run(run_id)) is not None and run.status != status:
        assert time.monotonic() < deadline, f"{run_id} is {run.status}, never {status}"
        await asyncio.sleep(0.02)


async def test_an_agents_max_running_holds_for_runs_its_process_starts(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.3
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(resources(model_server.url, agent={"max_running": 1}))
        runs = [await rt.submit("bot", f"q{i}") for i in range(3)]
        assert [r.status for r in runs] == ["running", "queued", "queued"]
        places = await places_of(store, runs, now=time.time())
        assert places[runs[1].id].reason == "agent bot is at its max_running=1", places
        results = await asyncio.gather(*(rt.wait(run.id) for run in runs))
    assert [r.status for r in results] == ["succeeded"] * 3
    spans = [await _span(store, run.id) for run in runs]
    assert most_at_once(spans) == 1, spans
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)  # oldest first


async def test_a_tenants_max_running_holds_across_processes_on_one_store(
    tmp_path: Path, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.3
    path = tmp_path / "shared.db"
    async with Runtime(path, resume_interrupted=False) as first:
        await first.apply([tenant_resource("acme", max_running=1)])
        await first.apply(resources(model_server.url, namespace="acme"))
        async with Runtime(path, resume_interrupted=False) as second:
            runs = await asyncio.gather(
                *(rt.submit("bot", f"{i}", namespace="acme")
                  for i, rt in enumerate([first, second, first, second]))
            )  # fmt: skip
            waits = [rt.wait(run.id) for rt, run in zip([first, second] * 2, runs, strict=True)]
            results = await asyncio.wait_for(asyncio.gather(*waits), timeout=60)
        spans = [await _span(first.store, run.id) for run in runs]  # type: ignore[arg-type]
    assert [r.status for r in results] == ["succeeded"] * 4
    assert most_at_once(spans) == 1, spans


async def test_runs_held_back_in_a_process_start_by_priority(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.3
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(resources(model_server.url, agent={"max_running": 1}))
        first = await rt.submit("bot", "first")
        low = await rt.submit("bot", "low", priority="low")
        high = await rt.submit("bot", "high", priority="high")
        for run in (first, low, high):
            await asyncio.wait_for(rt.wait(run.id), timeout=30)
    started = {run.id: (await _span(store, run.id))[0] for run in (first, low, high)}
    assert started[first.id] < started[high.id] < started[low.id], started


async def test_without_a_limit_a_run_starts_at_once_leased_to_its_process(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.3
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(resources(model_server.url))
        runs = [await rt.submit("bot", f"q{i}") for i in range(3)]
        assert all(r.status == "running" and r.lease_owner == rt.owner for r in runs), runs
        for run in runs:
            await rt.wait(run.id)
    assert most_at_once([await _span(store, run.id) for run in runs]) == 3


async def test_a_serving_process_runs_take_its_free_slots_or_wait_for_them(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.3
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(resources(model_server.url))
        serving = rt.serving(concurrency=1, poll_s=0.05)
        served = asyncio.create_task(serving.run(grace_s=5.0))
        await asyncio.sleep(0.1)  # serving
        # The first takes the free slot at once; the others wait for it.
        runs = [await rt.submit("bot", f"q{i}") for i in range(3)]
        assert [r.status for r in runs] == ["running", "queued", "queued"], runs
        results = [await asyncio.wait_for(rt.wait(run.id), timeout=30) for run in runs]
        serving.drain()
        await served
    assert [r.status for r in results] == ["succeeded"] * 3
    assert most_at_once([await _span(store, run.id) for run in runs]) == 1


async def test_a_run_held_back_can_be_cancelled_and_is_not_started_after(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.5
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(resources(model_server.url, agent={"max_running": 1}))
        first = await rt.submit("bot", "first")
        held = await rt.submit("bot", "held")
        await rt.cancel(held.id)
        await _until_status(store, held.id, "cancelled")
        await rt.wait(first.id)
        await asyncio.sleep(0.7)  # a round of the held-back runs' claims
        assert not rt.executing(held.id)
    events = await store.read_events(held.id)
    assert not any(e.type == ev.RUN_STARTED for e in events), [e.type for e in events]


async def test_resuming_a_queued_run_starts_it_in_its_turn(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    """``agentrt resume`` of a run that never started (queued, say by a process that was
    interrupted while a limit held it back) holds to the limit like a new run."""
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.5
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(resources(model_server.url, agent={"max_running": 1}))
        first = await rt.submit("bot", "first")
        queued = await rt.submit("bot", "later", start=False)
        result = await asyncio.wait_for(rt.resume(queued.id, by="ana"), timeout=30)
        await rt.wait(first.id)
    assert result.status == "succeeded"
    spans = [await _span(store, run.id) for run in (first, queued)]
    assert most_at_once(spans) == 1, spans
    started = [e for e in await store.read_events(queued.id) if e.type == ev.RUN_STARTED]
    assert started[0].data.get("by") == "ana"
