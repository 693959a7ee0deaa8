"""Team runs: the graph executor's own cost per node (fan-out 10, depth 3).

``python bench/team_bench.py [--runs 20] [--json]``

The team is ``plan`` → 10 workers in parallel → ``join``: 12 agent nodes, three
levels. Agents answer from the offline scripted model, so a node costs only
what the runtime does. Measured, as medians over ``--runs``:

* *team*: one team run with ``concurrency: 1`` (nodes one after another);
* *direct*: the same 12 agent runs started one after another with ``rt.run``;
* *overhead per node*: (team - direct) / 12, what running a node as part of a
  graph adds to running its agent: node events, state folding, scheduling,
  and the child-run link;
* *parallel*: the team with ``concurrency: 10``, wall time.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path[0] = str(_ROOT)  # run as a script: import the bench package

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from agentrt.engine.runtime import Runtime  # noqa: E402
from agentrt.spec import Resource, parse_resource  # noqa: E402
from agentrt.state import SqliteStore  # noqa: E402

__all__ = ["main", "team_overhead"]

WORKERS = 10
NODES = WORKERS + 2


def _resources(concurrency: int) -> list[Resource]:
    workers = [
        {"name": f"w{i}", "agent": "worker", "after": ["plan"], "output": "parts",
         "input": f"part {i} of {{state.plan}}"}
        for i in range(WORKERS)
    ]  # fmt: skip
    docs: list[dict[str, Any]] = [
        {
            "kind": "Model",
            "metadata": {"name": "offline"},
            "spec": {"provider": "scripted", "script": [{"steps": [{"content": "ok"}]}]},
        },
        {"kind": "Agent", "metadata": {"name": "worker"}, "spec": {"model": "offline"}},
        {
            "kind": "Team",
            "metadata": {"name": f"fan-{concurrency}"},
            "spec": {
                "concurrency": concurrency,
                "state": {"parts": {"reducer": "append"}},
                "nodes": [
                    {"name": "plan", "agent": "worker"},
                    *workers,
                    {"name": "join", "agent": "worker", "after": [w["name"] for w in workers],
                     "input": "{state.parts}"},
                ],
            },
        },
    ]  # fmt: skip
    return [parse_resource({"apiVersion": "agentrt.dev/v1", **doc}) for doc in docs]


async def _timed(runs: int, once: Any) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await once()
        samples.append(time.perf_counter() - start)
    return samples


async def team_overhead(runs: int = 20) -> dict[str, float]:
    """Medians in milliseconds: team (serial), direct, overhead per node, parallel team."""
    with tempfile.TemporaryDirectory(prefix="agentrt-team-bench-") as tmp:
        store = await SqliteStore.open(Path(tmp) / "bench.db")
        async with Runtime(store) as rt:
            await rt.apply([*_resources(1), *_resources(WORKERS)[2:]])

            async def team(name: str) -> None:
                result = await rt.run(name, "go")
                assert result.ok, result.reason

            async def direct() -> None:
                for i in range(NODES):
                    result = await rt.run("worker", f"part {i}")
                    assert result.ok, result.reason

            await team("fan-1")
            await direct()  # warm caches: parsed specs, clients
            serial = await _timed(runs, lambda: team("fan-1"))
            alone = await _timed(runs, direct)
            parallel = await _timed(runs, lambda: team(f"fan-{WORKERS}"))
        await store.close()
    ms = 1e3
    team_ms, direct_ms = statistics.median(serial) * ms, statistics.median(alone) * ms
    return {
        "team_serial_ms": team_ms,
        "direct_ms": direct_ms,
        "overhead_per_node_ms": (team_ms - direct_ms) / NODES,
        "team_parallel_ms": statistics.median(parallel) * ms,
        "runs": runs,
    }


def render(row: dict[str, float]) -> str:
    """The figures as a small table."""
    return "\n".join(
        [
            f"team workload: fan-out {WORKERS}, depth 3 ({NODES} agent nodes), median of "
            f"{int(row['runs'])} runs",
            f"  team, one node at a time   {row['team_serial_ms']:8.1f} ms",
            f"  the same {NODES} runs directly  {row['direct_ms']:8.1f} ms",
            f"  overhead per node          {row['overhead_per_node_ms']:8.2f} ms",
            f"  team, {WORKERS} nodes at a time  {row['team_parallel_ms']:8.1f} ms",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    row = asyncio.run(team_overhead(args.runs))
    print(json.dumps(row, indent=2) if args.json else render(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
