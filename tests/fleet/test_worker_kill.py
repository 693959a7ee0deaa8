"""A worker SIGKILLed mid-flight: the others finish every run, and nothing recorded is
lost or performed twice."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from agentrt.models.testserver import ModelTestServer
from agentrt.state import Store
from tests.pg_effects import effect_rows

from .harness import (
    SCRIPT,
    Fleet,
    apply_and_queue,
    check_exactly_once,
    holding_runs,
    owners_after_start,
    settled,
)

pytestmark = pytest.mark.slow

RUNS = 100


@pytest.mark.parametrize("repetition", range(5))
async def test_a_worker_killed_mid_flight_repeats_nothing_and_strands_nothing(
    fleet_url: str, pg_schema: str, tmp_path: Path, repetition: int
) -> None:
    rng = random.Random(repetition)
    async with ModelTestServer(SCRIPT, latency_s=0.5) as server:
        ids = await apply_and_queue(fleet_url, server.url, RUNS)
        fleet = Fleet.on(fleet_url, tmp_path, lease_ttl_s=2.0)
        workers = [fleet.start(f"w{i}", concurrency=10) for i in range(3)]
        try:
            async with Store.from_url(fleet_url) as store:
                await asyncio.sleep(rng.uniform(0.5, 3.0))
                victim = rng.choice(workers)
                held = await holding_runs(store, victim)  # mid-flight: it holds some
                killed_at = time.time()
                victim.proc.kill()
                victim.proc.wait()
                runs = await settled(store, ids, timeout=180)
                effects = await asyncio.to_thread(effect_rows, pg_schema)
                outcomes = await check_exactly_once(store, runs, effects)
                last_owners = [owners_after_start(await store.read_events(i))[-1] for i in held]
        finally:
            fleet.stop_all()
    assert sum(outcomes.values()) == RUNS, outcomes
    # What the killed worker held, another worker executed to its end, unless the
    # killed one ended it itself in the moment between the look and the kill.
    for run_id, owner in zip(held, last_owners, strict=True):
        ended = runs[run_id].finished_at
        by_victim = f":{victim.pid}:" in owner
        assert not by_victim or (ended is not None and ended <= killed_at), (run_id, owner)
    survivors = [w for w in workers if w is not victim]
    assert [w.proc.returncode for w in survivors] == [0, 0], [w.said() for w in survivors]
    for worker in survivors:
        assert "Traceback" not in worker.said(), worker.said()
