"""The scheduler shares a worker's slots between tenants by weight, whatever the order
their queries came in, and a tenant that submits after another flooded the queue is
served at once, not after the backlog; within a tenant, higher priority first, and
limits of runs at once per tenant and per Agent hold (over real HTTP to the test
model server, on SQLite)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.engine.queue_places import places_of
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import resources, rules, tenant_resource

pytestmark = pytest.mark.slow

SLOTS = 4


async def _serve(rt: Runtime, seconds: float) -> None:
    serving = rt.serving(concurrency=SLOTS, poll_s=0.05)
    served = asyncio.create_task(serving.run(grace_s=5.0))
    await asyncio.sleep(seconds)
    serving.drain()
    await served


async def _all_finished(store: SqliteStore, run_ids: list[str]) -> bool:
    for run_id in run_ids:
        run = await store.get_run(run_id)
        if run is None or not run.finished:
            return False
    return True


async def _started_at(store: SqliteStore, run_id: str) -> float | None:
    starts = [e.ts for e in await store.read_events(run_id) if e.type == ev.RUN_STARTED]
    return starts[0] if starts else None


async def test_two_tenants_saturating_a_worker_get_even_shares_of_its_steps(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.1
    async with Runtime(store, resume_interrupted=False) as rt:
        for tenant in ("a", "b"):
            await rt.apply(resources(model_server.url, namespace=tenant))
        # All of a's queries are older than all of b's: first-come would serve a alone.
        # More than the window can take: both tenants have work to the end of it.
        runs = {
            tenant: [(await rt.submit("bot", f"q{i}", namespace=tenant, start=False)).id
                     for i in range(150)]
            for tenant in ("a", "b")
        }  # fmt: skip
        await _serve(rt, 2.0)
    steps = Counter[str]()
    for tenant, ids in runs.items():
        for run_id in ids:
            events = await store.read_events(run_id)
            steps[tenant] += sum(e.type == ev.MODEL_RESULT for e in events)
    total = steps["a"] + steps["b"]
    assert 20 <= total < 300, steps  # the window saw real work, and both had more
    assert 0.45 <= steps["a"] / total <= 0.55, steps


async def test_weights_share_the_slots_in_proportion(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.1
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply([tenant_resource("a", weight=3.0)])
        for tenant in ("a", "b"):
            await rt.apply(resources(model_server.url, namespace=tenant))
        ids = {t: [(await rt.submit("bot", f"q{i}", namespace=t, start=False)).id
                   for i in range(150)] for t in ("b", "a")}  # fmt: skip
        await _serve(rt, 2.0)
    done = Counter[str]()
    for tenant, runs in ids.items():
        for run_id in runs:
            run = await store.get_run(run_id)
            done[tenant] += run is not None and run.finished
    assert 20 <= done["a"] + done["b"] < 300 and done["b"] < 150, done
    assert 0.65 <= done["a"] / (done["a"] + done["b"]) <= 0.85, done  # 3 to 1


async def test_a_tenant_arriving_after_a_flood_is_served_at_once(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.05
    async with Runtime(store, resume_interrupted=False) as rt:
        for tenant in ("a", "b"):
            await rt.apply(resources(model_server.url, namespace=tenant))
        flood = [(await rt.submit("bot", f"q{i}", namespace="a", start=False)).id
                 for i in range(500)]  # fmt: skip
        serving = rt.serving(concurrency=SLOTS, poll_s=0.05)
        served = asyncio.create_task(serving.run(grace_s=5.0))
        await asyncio.sleep(0.5)
        late = [await rt.submit("bot", f"late{i}", namespace="b", start=False) for i in range(20)]
        deadline = time.monotonic() + 30
        while not await _all_finished(store, [run.id for run in late]):
            assert time.monotonic() < deadline, "b's queries did not finish"
            await asyncio.sleep(0.1)
        serving.drain()
        await served
    waits = [(await _started_at(store, run.id) or 0) - run.created_at for run in late]
    a_left = 0
    for run_id in flood:
        run = await store.get_run(run_id)
        a_left += run is None or not run.finished
    # Half the slots are b's while it has work: its 20 runs start within what 2 slots
    # take for 10 runs each (a run takes about 0.05 s here), with room for a slow
    # machine; first-come would have them wait for most of a's 500.
    assert max(waits) < 5.0, waits
    assert a_left > 100, "b was served while a's backlog still waited"


async def test_priority_classes_order_a_tenants_own_runs(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(resources(model_server.url))
        low = [await rt.submit("bot", f"l{i}", priority="low", start=False) for i in range(3)]
        normal = [await rt.submit("bot", f"n{i}", start=False) for i in range(3)]
        high = [await rt.submit("bot", f"h{i}", priority="high", start=False) for i in range(3)]
        serving = rt.serving(concurrency=1, poll_s=0.05)
        served = asyncio.create_task(serving.run(grace_s=5.0))
        for run in low:
            await asyncio.wait_for(rt.wait(run.id), timeout=30)
        serving.drain()
        await served
    started = {run.id: await _started_at(store, run.id) for run in [*low, *normal, *high]}
    order = sorted(started, key=lambda r: started[r] or 0)
    assert order == [r.id for r in [*high, *normal, *low]], order


async def test_limits_of_runs_at_once_per_tenant_and_agent_hold(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 0.2
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply([tenant_resource("a", max_running=2)])
        await rt.apply(resources(model_server.url, namespace="a"))
        await rt.apply(resources(model_server.url, namespace="b", agent={"max_running": 1}))
        ids = [(await rt.submit("bot", f"q{i}", namespace=t, start=False)).id
               for i in range(6) for t in ("a", "b")]  # fmt: skip
        serving = rt.serving(concurrency=10, poll_s=0.05)
        served = asyncio.create_task(serving.run(grace_s=5.0))
        peak: Counter[str] = Counter()
        for _ in range(40):
            listed = await store.list_runs(statuses=["running"], limit=100)
            running = Counter(r.namespace for r in listed)
            for tenant, n in running.items():
                peak[tenant] = max(peak[tenant], n)
            await asyncio.sleep(0.05)
        for run_id in ids:
            await asyncio.wait_for(rt.wait(run_id), timeout=30)
        serving.drain()
        await served
    assert peak == {"a": 2, "b": 1}, peak


async def test_a_queued_run_shows_its_place_its_wait_and_what_holds_it(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.latency_s = 5.0  # the first run holds the agent's only slot meanwhile
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(resources(model_server.url, agent={"max_running": 1}))
        ids = [(await rt.submit("bot", f"q{i}", start=False)).id for i in range(3)]
        serving = rt.serving(concurrency=10, poll_s=0.05)
        served = asyncio.create_task(serving.run(grace_s=0.1))
        deadline = time.monotonic() + 10
        while (run := await store.get_run(ids[0])) and run.status != "running":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        runs = [r for r in [await store.get_run(i) for i in ids] if r is not None]
        places = await places_of(store, runs, now=time.time())
        serving.drain()
        await served
    assert ids[0] not in places  # it runs
    assert [places[i].position for i in ids[1:]] == [1, 2]
    assert all(p.reason == "agent bot is at its max_running=1" for p in places.values())
    assert all(0 <= p.waiting_s < 30 for p in places.values())
    assert places[ids[1]].line().startswith("#1 ")
