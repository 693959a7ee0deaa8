"""The database restarts while 50 runs are in flight on two workers: every run ends
terminal or resumable, nothing recorded is lost, no run stays ``running`` without a
live lease once the lease TTL has passed, and the workers carry on unrestarted.

The store is a PostgreSQL cluster of the test's own (``tests/pg_cluster.py``); the
tool's effects stay on the shared test server, which is never restarted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agentrt.models.testserver import ModelTestServer
from agentrt.state import Store
from tests.pg_cluster import own_cluster
from tests.pg_effects import effect_rows

from .harness import SCRIPT, Fleet, apply_and_queue, check_exactly_once, holding_runs, settled

pytestmark = pytest.mark.slow

LEASE_TTL_S = 2.0
RUNS = 50


async def test_a_database_restart_strands_nothing_and_loses_nothing(
    pg_schema: str, tmp_path: Path
) -> None:
    with own_cluster() as cluster:
        url = f"{cluster.url}&schema=fleet"
        async with ModelTestServer(SCRIPT, latency_s=0.5) as server:
            ids = await apply_and_queue(url, server.url, RUNS)
            fleet = Fleet.on(url, tmp_path, lease_ttl_s=LEASE_TTL_S)
            workers = [fleet.start(f"w{i}", concurrency=15) for i in range(2)]
            try:
                for worker in workers:  # both running when the database goes
                    await worker.serving()
                async with Store.from_url(url) as store:
                    await holding_runs(store, workers[0])
                    before = {i: await store.read_events(i) for i in ids}
                await asyncio.to_thread(cluster.stop)
                await asyncio.sleep(LEASE_TTL_S * 1.5)  # an outage longer than a lease
                await asyncio.to_thread(cluster.start)
                async with Store.from_url(url) as store:
                    stale = await _running_without_a_lease(store, ids)
                    runs = await settled(store, ids, timeout=180)
                    effects = await asyncio.to_thread(effect_rows, pg_schema)
                    outcomes = await check_exactly_once(store, runs, effects)
                    after = {i: await store.read_events(i) for i in ids}
                # The workers were not restarted: both still run, and drain cleanly.
                alive = [w.proc.poll() is None for w in workers]
                codes = [w.stop() for w in workers]
            finally:
                fleet.stop_all()
    assert sum(outcomes.values()) == RUNS, outcomes
    assert outcomes.get("succeeded", 0) > 0
    assert not stale, f"running with no live lease past the TTL: {stale}"
    # Nothing recorded before the restart was lost: each old log is a prefix of the new.
    for run_id, old in before.items():
        new = after[run_id][: len(old)]
        assert [(e.seq, e.type, e.step) for e in new] == [(e.seq, e.type, e.step) for e in old]
    if alive != [True, True] or codes != [0, 0]:
        for worker in workers:  # shown in full with the failure
            print(f"--- {worker.name}: exit {worker.proc.poll()}\n{worker.said()}")
    assert alive == [True, True] and codes == [0, 0], (alive, codes)
    for worker in workers:
        assert "Traceback" not in worker.said(), worker.said()


async def _running_without_a_lease(store: Store, ids: list[str]) -> list[str]:
    """The runs that stay ``running`` with no live lease for longer than a TTL, watched
    for a few TTLs once the store is back (a run given back and claimed again a moment
    later is not one)."""
    since: dict[str, float] = {}
    stale: set[str] = set()
    deadline = time.monotonic() + LEASE_TTL_S * 5
    while time.monotonic() < deadline:
        now = time.time()
        running = {r.id: r for r in await store.list_runs(statuses=["running"], limit=1000)}
        for run_id in ids:
            run = running.get(run_id)
            if run is None or (run.lease_expires is not None and run.lease_expires > now):
                since.pop(run_id, None)
                continue
            first = since.setdefault(run_id, time.monotonic())
            if time.monotonic() - first > LEASE_TTL_S * 1.5:
                stale.add(run_id)
        await asyncio.sleep(0.25)
    return sorted(stale)
