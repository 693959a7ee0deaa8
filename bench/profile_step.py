"""Where agentrt's per-step time goes: ``python bench/profile_step.py [--runs N] [--top N]``.

Runs the per-step workload (20 tool calls, zero model latency) on the bare
loop and on agentrt without a profiler, to account for wall time, CPU of the
event-loop thread and CPU of agentrt's SQLite writer thread (by wrapping the
store's private internals), store calls per run and the cost of one store
round trip; then on agentrt under ``cProfile`` (event-loop thread only), to
split the CPU time by component and list agentrt's own functions.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import collections
import cProfile
import io
import pstats
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.agentrt_bench import AgentrtSystem
from bench.bare import BareLoop
from bench.common import LONG_TOOL_CALLS, query_text
from bench.server import TestServer
from bench.systems import System


class _Accounting:
    """Counts store operations and the SQLite writer thread's CPU time (by wrapping)."""

    def __init__(self) -> None:
        self.ops: collections.Counter[str] = collections.Counter()
        self.writer_cpu = 0.0
        self.batches = 0
        self.to_thread = 0
        self._lock = threading.Lock()

    def install(self, store: Any) -> Callable[[], None]:
        """Wrap the store's private job submission and writer batches; returns the undo.

        These are internals of agentrt's SQLite store: if they are renamed the
        wrapping is skipped and the counts read zero.
        """
        store_cls = type(store)
        writer_cls = type(getattr(store, "_writer", None))
        submit = getattr(store_cls, "_submit", None)
        run_batch = getattr(writer_cls, "_run_batch", None)
        to_thread = asyncio.to_thread
        if submit is None or run_batch is None:
            print("warning: store internals not found; no op counts", file=sys.stderr)

        def counted_submit(store: Any, kind: int, fn: Callable[..., Any], *args: Any) -> Any:
            self.ops[getattr(fn, "__name__", "?")] += 1
            assert submit is not None
            return submit(store, kind, fn, *args)

        def timed_batch(writer: Any, batch: list[Any]) -> None:
            assert run_batch is not None
            started = time.thread_time()
            try:
                run_batch(writer, batch)
            finally:
                with self._lock:
                    self.writer_cpu += time.thread_time() - started
                    self.batches += 1

        async def counted_to_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            self.to_thread += 1
            return await to_thread(fn, *args, **kwargs)

        if submit is not None and run_batch is not None:
            store_cls._submit = counted_submit
            writer_cls._run_batch = timed_batch
        asyncio.to_thread = counted_to_thread

        def uninstall() -> None:
            if submit is not None and run_batch is not None:
                store_cls._submit = submit
                writer_cls._run_batch = run_batch
            asyncio.to_thread = to_thread

        return uninstall

    def reset(self) -> None:
        self.ops.clear()
        self.writer_cpu = 0.0
        self.batches = 0
        self.to_thread = 0


async def _round_trips(system: AgentrtSystem, samples: int = 300) -> dict[str, float]:
    """Median microseconds of one store read round trip and one ``to_thread`` hop."""
    assert system._rt is not None
    store = system._rt.store
    reads, hops = [], []
    for _ in range(samples):
        started = time.perf_counter()
        await store.get_run("run_missing")
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.to_thread(int)
        hops.append(time.perf_counter() - started)
    return {
        "store_read_us": statistics.median(reads) * 1e6,
        "to_thread_us": statistics.median(hops) * 1e6,
    }


async def _timed(system: System, runs: int, first: int) -> tuple[float, float]:
    """Wall seconds and event-loop-thread CPU seconds of ``runs`` sequential runs."""
    cpu = time.thread_time()
    wall = time.perf_counter()
    for i in range(runs):
        await system.run(query_text("long", first + i))
    return time.perf_counter() - wall, time.thread_time() - cpu


def _category(filename: str, function: str) -> str:
    if "epoll" in function:
        return "idle in epoll: waiting for the server, the writer thread, the tool thread"
    if "/agentrt/" in filename:
        return "agentrt's own Python code"
    if "aiohttp" in filename or "yarl" in filename or "multidict" in filename:
        return "aiohttp (HTTP client)"
    if "_socket.socket" in function:
        return "socket send/recv syscalls"
    if "SimpleQueue" in function:
        return "queue.put to the writer thread (wakes it)"
    if "pydantic" in filename or "pydantic_core" in function:
        return "pydantic (tool-argument validation, spec models)"
    if "asyncio" in filename or "_asyncio" in function or "_contextvars" in function:
        return "asyncio event loop machinery"
    if "orjson" in function or "_hashlib" in function or "blake2" in function:
        return "orjson / hashing"
    return "other (stdlib, builtins)"


def _totals(profiler: cProfile.Profile) -> collections.Counter[str]:
    totals: collections.Counter[str] = collections.Counter()
    stats = pstats.Stats(profiler)
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        totals[_category(filename, function)] += row[2]  # tottime
    return totals


def _by_category(bare: cProfile.Profile, agentrt: cProfile.Profile, steps: int) -> list[str]:
    """Profiled time per step by component: bare loop, agentrt, difference."""
    b, a = _totals(bare), _totals(agentrt)
    per = 1000 / steps
    lines = ["   bare  agentrt     diff  ms/step, component"]
    for name, seconds in a.most_common():
        diff = (seconds - b[name]) * per
        lines.append(f"  {b[name] * per:5.3f}  {seconds * per:7.3f}  {diff:+7.3f}  {name}")
    lines.append(
        f"  {sum(b.values()) * per:5.3f}  {sum(a.values()) * per:7.3f}  "
        f"{(sum(a.values()) - sum(b.values())) * per:+7.3f}  total"
    )
    return lines


async def _profiled(system: System, runs: int, first: int) -> cProfile.Profile:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await _timed(system, runs, first)
    finally:
        profiler.disable()
    return profiler


async def _profile(url: str, db_dir: Path, runs: int, top: int) -> str:
    acct = _Accounting()
    steps = runs * LONG_TOOL_CALLS
    per = 1000 / steps
    async with BareLoop(url) as bare:
        await _timed(bare, 3, 0)
        bare_wall, bare_cpu = await _timed(bare, runs, 100)
        bare_profile = await _profiled(bare, runs, 1000)
    async with AgentrtSystem(url, db_dir / "agentrt.db") as system:
        assert system._rt is not None
        uninstall = acct.install(system._rt.store)
        try:
            await _timed(system, 3, 0)
            acct.reset()
            wall, loop_cpu = await _timed(system, runs, 100)
            writer_cpu, batches, hops = acct.writer_cpu, acct.batches, acct.to_thread
            ops = ", ".join(f"{name} {n / runs:g}" for name, n in acct.ops.most_common())
            trips = await _round_trips(system)
            profiler = await _profiled(system, runs, 1000)
        finally:
            uninstall()
    lines = [
        f"{runs} runs x {LONG_TOOL_CALLS} steps each, model latency 0, no profiler; "
        "ms per step (the run's fixed costs spread over its 20 steps):",
        "                              bare loop   agentrt   difference",
        f"  wall                        {bare_wall * per:8.3f}  {wall * per:8.3f}  "
        f"{(wall - bare_wall) * per:+8.3f}",
        f"  event-loop thread CPU       {bare_cpu * per:8.3f}  {loop_cpu * per:8.3f}  "
        f"{(loop_cpu - bare_cpu) * per:+8.3f}",
        f"  SQLite writer thread CPU    {0:8.3f}  {writer_cpu * per:8.3f}  "
        f"{writer_cpu * per:+8.3f}",
        f"agentrt: {batches / steps:.2f} writer batches (transactions) per step; "
        f"{hops / steps:.2f} asyncio.to_thread hops per step",
        f"agentrt: store calls per run: {ops}",
        f"agentrt: one store read round trip {trips['store_read_us']:.0f} us (median, idle "
        f"store); one asyncio.to_thread hop {trips['to_thread_us']:.0f} us",
        "",
        f"cProfile of {runs} runs each (event-loop thread only; the profiler inflates times):",
        *_by_category(bare_profile, profiler, steps),
    ]
    for sort in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(sort).print_stats("/agentrt/", top)
        body = out.getvalue().split("\n")
        # Drop pstats' preamble; keep the column header and the rows.
        header = next((i for i, line in enumerate(body) if "ncalls" in line), 0)
        lines += ["", f"agentrt functions by {sort}:", *body[header:]]
    return "\n".join(line.rstrip() for line in lines).rstrip()


def main(argv: list[str] | None = None) -> int:
    """Profile agentrt's per-step path and print the breakdown."""
    parser = argparse.ArgumentParser(prog="python bench/profile_step.py", description=__doc__)
    parser.add_argument("--runs", type=int, default=30, help="runs of 20 steps to measure")
    parser.add_argument("--top", type=int, default=30, help="functions to list")
    args = parser.parse_args(argv)
    with TestServer("process") as server, tempfile.TemporaryDirectory() as tmp:
        print(asyncio.run(_profile(server.url, Path(tmp), args.runs, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
