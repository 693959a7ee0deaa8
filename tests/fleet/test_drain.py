"""SIGTERM drains a busy worker: it exits 0 within its grace period, the runs it gives
back are finished by the others, and none is left with a step half done."""

from __future__ import annotations

import asyncio
import signal
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

# Half of it is the hand-back bound, in which a call in flight (a second each) ends
# before its run is given back: twice a call, so a loaded machine is not a kill.
GRACE_S = 4.0


async def test_a_drained_worker_exits_in_time_and_the_others_finish_its_runs(
    fleet_url: str, pg_schema: str, tmp_path: Path
) -> None:
    async with ModelTestServer(SCRIPT, latency_s=1.0) as server:
        ids = await apply_and_queue(fleet_url, server.url, 30)
        # Each charge takes a second, so some are in flight when the drain ends.
        fleet = Fleet.on(fleet_url, tmp_path, AGENTRT_TEST_PG_BEFORE_S="1.0")
        draining = fleet.start("draining", concurrency=15, grace_s=GRACE_S)
        try:
            async with Store.from_url(fleet_url) as store:
                await holding_runs(store, draining)
                other = fleet.start("other", concurrency=15)
                await asyncio.sleep(0.5)
                held = await holding_runs(store, draining)
                draining.signal(signal.SIGTERM)
                started = time.monotonic()
                code = await asyncio.to_thread(draining.proc.wait, 30)
                took = time.monotonic() - started
                runs = await settled(store, ids, timeout=120)
                effects = await asyncio.to_thread(effect_rows, pg_schema)
                outcomes = await check_exactly_once(store, runs, effects)
                last = {i: owners_after_start(await store.read_events(i))[-1] for i in held}
        finally:
            fleet.stop_all()
    assert code == 0, draining.said()
    # Its grace, plus the process's start-up and close; far from the minute of a kill.
    assert took < GRACE_S + 3, f"exited {took:.1f}s after SIGTERM"
    # Given back at step boundaries: no run was left with a call half done.
    assert outcomes == {"succeeded": 30}, outcomes
    handed = [i for i, owner in last.items() if f":{draining.pid}:" not in owner]
    assert handed, "some runs it held were finished by the other worker"
    said = draining.said()
    assert "draining" in said and "Traceback" not in said, said
    assert "Traceback" not in other.said()
