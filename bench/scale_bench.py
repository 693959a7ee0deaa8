"""One worker holding many runs in flight at once.

``python bench/scale_bench.py [--runs 1000] [--latency 1.0] [--json] [--profile FILE]``

An ``agentrt worker --concurrency RUNS`` process serves a SQLite store. Once it
is up it is paused (SIGSTOP), ``--runs`` queries of 3 tool calls each are
queued, and it is let go (SIGCONT): it claims them all and holds them in
flight together. The model server, in a process of its own, answers every
call after ``--latency`` seconds, so a run's ideal time is 4 model latencies
(3 tool calls and the final answer), and so is the batch's, all runs being in
flight at once. From the worker's own log:

* *wall*: from the first run's start to the last one's end, and its ratio to
  that ideal (the bound is 1.5x);
* *in flight*: the most runs started and not yet ended at one moment;
* *CPU per model call*: the worker process's CPU time (all its threads, from
  ``/proc``) over the batch, per model call;
* *memory per run*: the growth of the worker's resident set from its idle size
  to its peak while it holds the batch, per run.

The bare loop (raw aiohttp, nothing stored) runs the same batch in this
process for comparison, in the same invocation: the machine's noise hits both.
``--profile FILE`` runs the worker under ``cProfile`` (its event-loop thread)
and prints its top functions. See docs/performance.md.
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
import os  # noqa: E402
import pstats  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from agentrt import Runtime  # noqa: E402
from agentrt.state import Store  # noqa: E402
from bench.agentrt_bench import AGENT, resources  # noqa: E402
from bench.bare import BareLoop  # noqa: E402
from bench.common import FINAL_ANSWER, SHORT_TOOL_CALLS, query_text  # noqa: E402
from bench.server import TestServer  # noqa: E402

BOUND = 1.5  # the batch's wall time may be at most this many times the ideal
_TICK = os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def _cpu_s(pid: int, thread: int | None = None) -> float:
    """CPU seconds of a process (all its threads), or of one of its threads."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path, encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime, all threads


def _start_worker(
    store_url: str, runs: int, profile: str | None, log: Path
) -> subprocess.Popen[bytes]:
    """An ``agentrt worker`` process, once it serves; its stderr goes to ``log``."""
    env = {**os.environ, "AGENTRT_STORE": store_url, "PYTHONPATH": str(_ROOT)}
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    command = [sys.executable, *profiler, "-m", "agentrt.cli.main", "worker"]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*command, "--concurrency", str(runs), "--grace", "30"],
            env=env,
            stderr=err,
            stdout=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 60
    while "serving" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the worker did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc


async def _sample_peak(pid: int, peak: list[int], every_s: float = 0.05) -> None:
    while True:
        peak[0] = max(peak[0], _rss_kib(pid))
        await asyncio.sleep(every_s)


async def _until_finished(store: Store, ids: list[str]) -> None:
    left = list(ids)
    while left:
        await asyncio.sleep(0.2)
        runs = await store.list_runs(statuses=["succeeded", "failed", "cancelled"], limit=10**6)
        done = {run.id for run in runs}
        left = [run_id for run_id in left if run_id not in done]


async def _spans(store: Store, ids: list[str]) -> list[tuple[float, float]]:
    """(start, end) of every run, from its log; each must have succeeded."""
    spans = []
    for run_id in ids:
        run = await store.get_run(run_id)
        events = await store.read_events(run_id)
        started = next(e.ts for e in events if e.type == "run.started")
        finished = [e for e in events if e.type == "run.finished"][-1]
        output = finished.data.get("output")
        tool_results = sum(e.type == "tool.result" for e in events)
        if run is None or run.status != "succeeded" or output != FINAL_ANSWER:
            raise RuntimeError(f"run {run_id} ended {getattr(run, 'status', None)}: {output!r}")
        if tool_results != SHORT_TOOL_CALLS:
            raise RuntimeError(f"run {run_id} recorded {tool_results} tool results")
        spans.append((started, finished.ts))
    return spans


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


async def _queue(store_url: str, runs: int) -> list[str]:
    async with Runtime(store_url, resume_interrupted=False, notice_cancels=False) as rt:
        queued = await asyncio.gather(
            *(rt.submit(AGENT, query_text("short", i), start=False) for i in range(runs))
        )
    return [run.id for run in queued]


async def agentrt_batch(url: str, runs: int, latency: float, profile: str | None) -> dict[str, Any]:
    """The batch on one worker process; its measures."""
    with tempfile.TemporaryDirectory(prefix="agentrt-scale-") as tmp:
        store_url = f"sqlite:///{Path(tmp) / 'scale.db'}"
        async with Runtime(store_url, resume_interrupted=False, notice_cancels=False) as rt:
            await rt.apply(resources(url))
        worker = _start_worker(store_url, runs, profile, Path(tmp) / "worker.log")
        try:
            await asyncio.sleep(1.0)  # let it settle idle
            os.kill(worker.pid, signal.SIGSTOP)
            idle_kib = _rss_kib(worker.pid)
            ids = await _queue(store_url, runs)
            async with Store.from_url(store_url) as store:
                cpu_before = _cpu_s(worker.pid)
                loop_before = _cpu_s(worker.pid, worker.pid)  # the main thread runs the loop
                peak = [idle_kib]
                sampler = asyncio.create_task(_sample_peak(worker.pid, peak))
                os.kill(worker.pid, signal.SIGCONT)
                await _until_finished(store, ids)
                cpu = _cpu_s(worker.pid) - cpu_before
                loop_cpu = _cpu_s(worker.pid, worker.pid) - loop_before
                sampler.cancel()
                spans = await _spans(store, ids)
        finally:
            os.kill(worker.pid, signal.SIGCONT)
            worker.terminate()
            worker.wait(timeout=60)
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    calls = runs * (SHORT_TOOL_CALLS + 1)
    ideal = (SHORT_TOOL_CALLS + 1) * latency
    return {
        "wall_s": wall,
        "ideal_s": ideal,
        "vs_ideal": wall / ideal,
        "in_flight": _most_at_once(spans),
        "cpu_ms_per_model_call": cpu * 1000 / calls,
        "loop_cpu_ms_per_model_call": loop_cpu * 1000 / calls,
        "kib_per_run": (peak[0] - idle_kib) / runs,
        "idle_mib": idle_kib / 1024,
    }


async def bare_batch(url: str, runs: int, latency: float) -> dict[str, Any]:
    """The same batch on the bare loop, in this process."""
    async with BareLoop(url) as bare:
        await asyncio.gather(*(bare.run(query_text("short", i)) for i in range(20)))  # warm-up
        cpu_before = time.process_time()
        started = time.perf_counter()
        outputs = await asyncio.gather(*(bare.run(query_text("short", i)) for i in range(runs)))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
    if any(output != FINAL_ANSWER for output in outputs):
        raise RuntimeError("the bare loop gave a wrong answer")
    ideal = (SHORT_TOOL_CALLS + 1) * latency
    calls = runs * (SHORT_TOOL_CALLS + 1)
    return {
        "wall_s": wall,
        "ideal_s": ideal,
        "vs_ideal": wall / ideal,
        "in_flight": runs,
        "cpu_ms_per_model_call": cpu * 1000 / calls,
    }


async def main(runs: int, latency: float, profile: str | None) -> dict[str, Any]:
    """Both batches against one model server."""
    with TestServer("process") as server:
        server.set_latency(latency)
        bare = await bare_batch(server.url, runs, latency)
        agentrt = await agentrt_batch(server.url, runs, latency, profile)
    return {"runs": runs, "latency_s": latency, "bound": BOUND, "bare": bare, "agentrt": agentrt}


def render(doc: dict[str, Any]) -> str:
    """The table."""
    lines = [
        f"{doc['runs']} runs in flight, 4 model calls each, model latency {doc['latency_s']} s",
        "",
        "| system | wall | vs ideal | most in flight | CPU per model call | memory per run |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("bare", "bare loop"), ("agentrt", "agentrt worker (SQLite)")):
        r = doc[name]
        memory = f"{r['kib_per_run']:.0f} KiB" if "kib_per_run" in r else "—"
        lines.append(
            f"| {label} | {r['wall_s']:.2f} s | {r['vs_ideal']:.2f}x | {r['in_flight']} "
            f"| {r['cpu_ms_per_model_call']:.2f} ms | {memory} |"
        )
    return "\n".join(lines)


def _top(profile: str, limit: int = 25) -> str:
    import io

    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(limit)
    return out.getvalue()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=1.0, help="model latency, seconds")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", metavar="FILE", help="profile the worker into FILE")
    args = parser.parse_args()
    result = asyncio.run(main(args.runs, args.latency, args.profile))
    print(json.dumps(result, indent=2) if args.json else render(result))
    if args.profile:
        print(_top(args.profile))
    within = result["agentrt"]["vs_ideal"] <= BOUND and result["agentrt"]["in_flight"] == args.runs
    sys.exit(0 if within else 1)
