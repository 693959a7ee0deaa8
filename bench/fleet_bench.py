"""The queue on SQLite and PostgreSQL: claim latency with many runs queued, a query's
admission and dispatch under a tenant Budget, and the throughput of 1, 2 and 3
worker processes draining one queue.

``python bench/fleet_bench.py [--queued 1000] [--runs 300] [--json]``

* *claim*: with ``--queued`` runs queued, the median and p95 time of one
  ``claim_runs(limit=1)`` (each claim takes the oldest; 200 claims);
* *admit* and *dispatch*: with ``--queued`` runs queued and a tenant ``Budget``,
  the median and p95 time of ``Runtime.submit(start=False)`` (the plan, the
  Budget's admission check, the run created with its audit record) and of the
  worker's dispatch of one run (the scheduler's read of the queue, its pick, and
  the claim), without and with a tenant ``max_running`` the claim keeps (200
  queries);
* *queue read*: the scheduler's read of the queue (each of 4 tenants' first 100
  claimable runs, over 3 priority classes) with 1,000 and 10,000 runs queued;
* *workers N*: ``--runs`` queued runs of a one-model-call agent (the test
  server answers after 20 ms) drained by N ``agentrt worker`` processes, from
  the first worker's start to the last run's end, as runs per second. The
  workers' start-up (about a second each, in parallel) is included, so the
  figure is a floor.

PostgreSQL is the test server (``AGENTRT_TEST_PG_URL``, default
127.0.0.1:5432, database ``test``), each measure in a fresh schema.
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
import secrets  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from agentrt import Runtime  # noqa: E402
from agentrt._text import count  # noqa: E402
from agentrt.engine.schedule_book import ScheduleBook, claim_next  # noqa: E402
from agentrt.models.testserver import ModelTestServer, ScriptedRule  # noqa: E402
from agentrt.spec.loader import load_text  # noqa: E402
from agentrt.state import NewRun, Store  # noqa: E402

PG = os.environ.get("AGENTRT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RESOURCES = """\
apiVersion: agentrt.dev/v1
kind: Model
metadata: {name: m}
spec: {provider: openai, base_url: "URL", max_retries: 0}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: bot}
spec: {model: m, instructions: x}
"""


def _stores(tmp: Path) -> dict[str, str]:
    pg = f"{PG}{'&' if '?' in PG else '?'}schema=bench_{secrets.token_hex(4)}"
    return {"sqlite": f"sqlite:///{tmp / f'{secrets.token_hex(4)}.db'}", "postgresql": pg}


async def _drop(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    import psycopg

    schema = url.rsplit("schema=", 1)[1]
    async with await psycopg.AsyncConnection.connect(PG, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def claim_latency(url: str, queued: int) -> dict[str, float]:
    """Median and p95 ms of one claim with ``queued`` runs queued."""
    async with Store.from_url(url) as store:
        for i in range(queued):
            await store.create_run(NewRun(f"run_{i:06d}", "default", "bot", 1000.0 + i))
        times = []
        for _ in range(200):
            start = time.perf_counter()
            claimed = await store.claim_runs("bench:1:x", 30, now=time.time(), limit=1)
            times.append((time.perf_counter() - start) * 1000)
            assert len(claimed) == 1
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[int(len(times) * 0.95)]}


QUEUE_SIZES = (1_000, 10_000)


async def queue_read_latency(url: str) -> dict[str, float]:
    """Median ms of the scheduler's read of the queue (each of 4 tenants' first 100
    claimable runs, 3 priority classes) with each of ``QUEUE_SIZES`` runs queued."""
    medians = {}
    async with Store.from_url(url) as store:
        made = 0
        for size in QUEUE_SIZES:
            for i in range(made, size):
                new = NewRun(f"run_{i:06d}", f"t{i % 4}", "bot", 1000.0 + i, priority=i % 3 - 1)
                await store.create_run(new)
            made = size
            times = []
            for _ in range(50):
                start = time.perf_counter()
                view = await store.queue_view(now=time.time(), per_tenant=100)
                times.append((time.perf_counter() - start) * 1000)
                assert len(view.waiting) == 400
            medians[f"{size}_ms"] = statistics.median(times)
    return medians


BUDGET = """\
---
apiVersion: agentrt.dev/v1
kind: Budget
metadata: {name: monthly}
spec: {period: month, max_cost_usd: 1000.0}
"""

TENANT = """
---
apiVersion: agentrt.dev/v1
kind: Tenant
metadata: {name: default, namespace: agentrt-system}
spec: {max_running: 100000}
"""


async def admission_latency(url: str, queued: int, *, capped: bool = False) -> dict[str, float]:
    """Median and p95 ms of admitting one query, and of dispatching one (the worker's
    scheduler pick and claim), with ``queued`` runs queued and a tenant Budget to
    admit against; ``capped``: under a tenant ``max_running`` the claim keeps."""
    admit, dispatch = [], []
    async with Runtime(url, resume_interrupted=False, notice_cancels=False) as rt:
        tenant = TENANT if capped else ""
        await rt.apply(load_text(RESOURCES.replace("URL", "http://127.0.0.1:9") + BUDGET + tenant))
        book = ScheduleBook(rt.store)
        for i in range(queued):
            await rt.submit("bot", f"q{i}", start=False)
        for i in range(200):
            start = time.perf_counter()
            await rt.submit("bot", f"more {i}", start=False)
            admit.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            claimed, _ = await claim_next(
                rt.store, book, owner="bench:1:x", ttl_s=30, now=time.time(), slots=1
            )
            dispatch.append((time.perf_counter() - start) * 1000)
            assert len(claimed) == 1
    return {**_spread("admit", admit), **_spread("dispatch", dispatch)}


def _spread(name: str, times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {f"{name}_median_ms": statistics.median(times),
            f"{name}_p95_ms": times[int(len(times) * 0.95)]}  # fmt: skip


async def workers_throughput(url: str, workers: int, runs: int) -> float:
    """Runs per second that ``workers`` worker processes drain from one queue."""
    rules = [ScriptedRule.model_validate({"match": ".*", "steps": [{"content": "ok"}]})]
    async with ModelTestServer(rules, latency_s=0.02) as server:
        async with Runtime(url, resume_interrupted=False, notice_cancels=False) as rt:
            await rt.apply(load_text(RESOURCES.replace("URL", server.url)))
            ids = [(await rt.submit("bot", f"q{i}", start=False)).id for i in range(runs)]
        env = {**os.environ, "AGENTRT_STORE": url, "PYTHONPATH": str(_ROOT)}
        start = time.perf_counter()
        procs = [_worker(env) for _ in range(workers)]
        try:
            async with Store.from_url(url) as store:
                while True:
                    left = [i for i in ids if not (await store.get_run(i)).finished]  # type: ignore[union-attr]
                    if not left:
                        break
                    ids = left
                    await asyncio.sleep(0.05)
            took = time.perf_counter() - start
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
    return runs / took


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentrt.cli.main", "worker", "--concurrency", "50"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def main(queued: int, runs: int) -> dict[str, Any]:
    """Every measure on both stores."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("sqlite", "postgresql"):
            url = _stores(Path(tmp))[name]
            try:
                results[f"claim {name}"] = await claim_latency(url, queued)
            finally:
                await _drop(url)
            url = _stores(Path(tmp))[name]
            try:
                results[f"queue {name}"] = await queue_read_latency(url)
            finally:
                await _drop(url)
            url = _stores(Path(tmp))[name]
            try:
                results[f"admit {name}"] = await admission_latency(url, queued)
            finally:
                await _drop(url)
            url = _stores(Path(tmp))[name]
            try:
                results[f"capped {name}"] = await admission_latency(url, queued, capped=True)
            finally:
                await _drop(url)
            for n in (1, 2, 3):
                url = _stores(Path(tmp))[name]
                try:
                    results[f"workers {n} {name}"] = await workers_throughput(url, n, runs)
                finally:
                    await _drop(url)
    return results


def render(results: dict[str, Any], queued: int, runs: int) -> str:
    """The table."""
    lines = ["| measure | SQLite | PostgreSQL |", "|---|---|---|"]
    c_s, c_p = results["claim sqlite"], results["claim postgresql"]
    lines.append(
        f"| one claim, {queued} queued (median / p95) | {c_s['median_ms']:.2f} / "
        f"{c_s['p95_ms']:.2f} ms | {c_p['median_ms']:.2f} / {c_p['p95_ms']:.2f} ms |"
    )
    a_s, a_p = results["admit sqlite"], results["admit postgresql"]
    m_s, m_p = results["capped sqlite"], results["capped postgresql"]
    for (s_, p_), what, label in (
        ((a_s, a_p), "admit", "admit one query"),
        ((a_s, a_p), "dispatch", "dispatch it (scheduler pick, claim)"),
        ((m_s, m_p), "dispatch", "dispatch it under a tenant max_running"),
    ):
        lines.append(
            f"| {label}, {queued} queued, a Budget (median / p95) | "
            f"{s_[what + '_median_ms']:.2f} / {s_[what + '_p95_ms']:.2f} ms | "
            f"{p_[what + '_median_ms']:.2f} / {p_[what + '_p95_ms']:.2f} ms |"
        )
    q_s, q_p = results["queue sqlite"], results["queue postgresql"]
    for size in QUEUE_SIZES:
        lines.append(
            f"| the scheduler's queue read, {size} queued, 4 tenants (median) | "
            f"{q_s[f'{size}_ms']:.2f} ms | {q_p[f'{size}_ms']:.2f} ms |"
        )
    for n in (1, 2, 3):
        s, p = results[f"workers {n} sqlite"], results[f"workers {n} postgresql"]
        lines.append(f"| {count(n, 'worker')}, {runs} runs | {s:.0f} runs/s | {p:.0f} runs/s |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = asyncio.run(main(args.queued, args.runs))
    print(json.dumps(out, indent=2) if args.json else render(out, args.queued, args.runs))
