"""A worker paused past its leases (SIGSTOP) wakes up to find its runs taken over: it
appends nothing to them, notices it lost them, and goes on with other work."""

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
    WorkerProcess,
    apply_and_queue,
    check_exactly_once,
    holding_runs,
    owned_by,
    owners_after_start,
    settled,
)

pytestmark = pytest.mark.slow

LEASE_TTL_S = 2.0


async def test_a_paused_worker_writes_nothing_to_runs_taken_from_it(
    fleet_url: str, pg_schema: str, tmp_path: Path
) -> None:
    async with ModelTestServer(SCRIPT, latency_s=1.0) as server:
        first = await apply_and_queue(fleet_url, server.url, 10, prefix="a")
        fleet = Fleet.on(fleet_url, tmp_path, lease_ttl_s=LEASE_TTL_S)
        paused = fleet.start("paused", concurrency=10)
        try:
            async with Store.from_url(fleet_url) as store:
                held = await holding_runs(store, paused)
                paused.signal(signal.SIGSTOP)
                stopped_at = time.monotonic()
                other = fleet.start("other", concurrency=10)
                # Its leases run out unrenewed; the other worker takes the runs over.
                taken = await _taken_over(store, held, paused)
                assert time.monotonic() - stopped_at >= LEASE_TTL_S * 0.9
                paused.signal(signal.SIGCONT)
                later = await apply_and_queue(fleet_url, server.url, 20, prefix="b")
                runs = await settled(store, [*first, *later], timeout=120)
                effects = await asyncio.to_thread(effect_rows, pg_schema)
                outcomes = await check_exactly_once(store, runs, effects)
                starts = {i: owners_after_start(await store.read_events(i)) for i in runs}
        finally:
            fleet.stop_all()
    assert sum(outcomes.values()) == 30, outcomes
    mine = f":{paused.pid}:"
    for run_id in taken:
        # Once taken over, the run was never started by the paused worker again, and
        # the execution that ended it is the other worker's.
        owners = starts[run_id]
        assert owners and mine not in owners[-1], (run_id, owners)
    assert any(mine in owners[0] for i, owners in starts.items() if i in later), (
        "after waking up, the paused worker went on with other work"
    )
    said = paused.said()
    assert "lost its lease" in said or "stays resumable" in said, said
    assert "Traceback" not in said and "Traceback" not in other.said()
    assert paused.proc.returncode == 0 and other.proc.returncode == 0


async def _taken_over(store: Store, held: list[str], paused: WorkerProcess) -> list[str]:
    """Wait until none of ``held`` is leased to the paused worker any more."""
    deadline = time.monotonic() + 30
    while True:
        runs = [await store.get_run(i) for i in held]
        if all(r is not None and not owned_by(r, paused) for r in runs):
            return held
        assert time.monotonic() < deadline, "the other worker never took the runs over"
        await asyncio.sleep(0.05)
