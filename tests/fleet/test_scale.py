"""One worker process holds 1,000 runs in flight at once, within a stated memory
per run (bench/scale_bench.py measures its time against the ideal too)."""

from __future__ import annotations

from bench.scale_bench import agentrt_batch
from bench.server import TestServer

RUNS = 1000
KIB_PER_RUN = 128  # the figure docs/performance.md states


async def test_one_worker_holds_a_thousand_runs_in_flight() -> None:
    with TestServer("process") as server:
        server.set_latency(1.0)
        batch = await agentrt_batch(server.url, RUNS, 1.0, None)
        served = server.served()
    # Every run answered right after its 3 tool calls (agentrt_batch checks each
    # log), all of them in flight together, and each model call made once.
    assert batch["in_flight"] == RUNS, batch
    assert served == RUNS * 4
    assert batch["kib_per_run"] < KIB_PER_RUN, batch
