"""The three workloads: ``per_step`` over all systems at once, the others over one system.

Every workload opens its systems with fresh databases, checks every answer,
and returns measurements plus ``model_calls``: the number of completions the
server must have served, which the caller verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    FINAL_ANSWER,
    LONG_TOOL_CALLS,
    SHORT_TOOL_CALLS,
    db_footprint,
    query_text,
    summarize,
)
from bench.systems import System, SystemDef

__all__ = ["Settings", "per_step", "storage", "throughput"]


@dataclass(frozen=True)
class Settings:
    """How much work each workload does."""

    step_warmup: int = 3
    step_runs: int = 50
    queries: int = 200
    concurrency: int = 50
    latency_s: float = 0.05
    throughput_reps: int = 5
    throughput_warmup: int = 50
    storage_runs: int = 50


async def _checked(system: System, text: str) -> None:
    output = await system.run(text)
    if output != FINAL_ANSWER:
        raise RuntimeError(f"wrong final answer {output!r} for {text!r}")


async def per_step(
    sysdefs: list[SystemDef], url: str, db_dir: Path, s: Settings
) -> dict[str, dict[str, Any]]:
    """Workload 1: runs of 20 tool calls (21 model calls), zero model latency, one at a time.

    All systems are open at once and take turns, one run each per round (the
    order rotating every round), so that drift in the machine's speed hits
    every system alike. ``ms_per_step`` is the median run's wall time / 20 (a
    step is one model call and its tool call; the run's final model call and
    its fixed costs are spread over the 20 steps). Returns one result per
    system, plus ``model_calls`` for all of them under the key ``"_total"``.
    """
    times: dict[str, list[float]] = {sd.name: [] for sd in sysdefs}
    async with contextlib.AsyncExitStack() as stack:
        systems = [
            (sd.name, await stack.enter_async_context(sd.make(url, db_dir / f"{sd.name}.db")))
            for sd in sysdefs
        ]
        for i in range(s.step_warmup):
            for _, system in systems:
                await _checked(system, query_text("long", i))
        gc.collect()
        for i in range(s.step_runs):
            turn = i % len(systems)
            for name, system in systems[turn:] + systems[:turn]:
                started = time.perf_counter()
                await _checked(system, query_text("long", s.step_warmup + i))
                times[name].append(time.perf_counter() - started)
    results: dict[str, dict[str, Any]] = {}
    for name, samples in times.items():
        stats = summarize(samples)
        results[name] = {
            "run_ms": {k: (v * 1000 if k != "n" else v) for k, v in stats.items()},
            "ms_per_step": stats["median"] * 1000 / LONG_TOOL_CALLS,
            "ms_per_step_min": stats["min"] * 1000 / LONG_TOOL_CALLS,
        }
    calls = (s.step_warmup + s.step_runs) * (LONG_TOOL_CALLS + 1) * len(sysdefs)
    results["_total"] = {"model_calls": calls}
    return results


async def _batch(system: System, first: int, count: int, concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with limit:
            await _checked(system, query_text("short", index))

    started = time.perf_counter()
    await asyncio.gather(*(one(first + i) for i in range(count)))
    return time.perf_counter() - started


async def throughput(sysdef: SystemDef, url: str, db: Path, s: Settings) -> dict[str, Any]:
    """Workload 2: ``queries`` queries of 3 tool calls, ``concurrency`` in flight, model latency.

    Reports the median wall time of ``throughput_reps`` batches (after one
    warm-up batch), queries per second, and the ratio to the latency-bound ideal.
    """
    walls = []
    async with sysdef.make(url, db) as system:
        await _batch(system, 0, s.throughput_warmup, s.concurrency)
        gc.collect()
        for rep in range(s.throughput_reps):
            first = s.throughput_warmup + rep * s.queries
            walls.append(await _batch(system, first, s.queries, s.concurrency))
    calls_per_query = SHORT_TOOL_CALLS + 1
    ideal = -(-s.queries // s.concurrency) * calls_per_query * s.latency_s
    stats = summarize(walls)
    return {
        "wall_s": stats,
        "ideal_s": ideal,
        "queries_per_s": s.queries / stats["median"],
        "vs_ideal": stats["median"] / ideal,
        "model_calls": (s.throughput_warmup + s.throughput_reps * s.queries) * calls_per_query,
    }


def _payload(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0] or 0)
    finally:
        conn.close()


async def storage(sysdef: SystemDef, url: str, db: Path, s: Settings) -> dict[str, Any]:
    """Workload 3: database growth per 20-tool-call run.

    One warm-up run creates the schema and stored resources; then the file is
    checkpointed and measured, ``storage_runs`` more runs are made, and it is
    checkpointed and measured again. Growth / runs is the cost of one run.
    """
    async with sysdef.make(url, db) as system:
        await _checked(system, query_text("long", 0))
    before = db_footprint(db)
    payload_before = _payload(db, sysdef.payload_sql) if sysdef.payload_sql else 0
    async with sysdef.make(url, db) as system:
        for i in range(s.storage_runs):
            await _checked(system, query_text("long", 1 + i))
    after = db_footprint(db)
    payload_after = _payload(db, sysdef.payload_sql) if sysdef.payload_sql else 0
    n = s.storage_runs
    return {
        "bytes_per_run": (after["bytes"] - before["bytes"]) / n,
        "used_bytes_per_run": (
            (after["bytes"] - after["free_bytes"]) - (before["bytes"] - before["free_bytes"])
        )
        / n,
        "payload_bytes_per_run": (payload_after - payload_before) / n,
        "runs": n,
        "file_bytes": after["bytes"],
        "model_calls": (1 + n) * (LONG_TOOL_CALLS + 1),
    }
