"""The control plane over HTTP: query throughput through ``agentrt serve``, and one run's
live events fanned out to many clients.

``python -m bench.api_bench [--quick] [--only api|sse] [--json]``

* *api*: ``--queries`` short queries (3 tool calls, 4 model calls each; the
  model server answers after ``--latency`` seconds) submitted in the background
  (``POST /v1/queries``, each with an idempotency key) from a concurrent httpx
  client, ``--concurrency`` requests in flight, spread over the replicas; then
  polled (``GET /v1/runs?status=queued&status=running&limit=1``) until none is
  unfinished. On SQLite with one ``agentrt serve``, and on PostgreSQL (a fresh
  schema) with one and two replicas serving the same store. Reported: queries
  submitted per second (the last 202's time) and completed per second (the
  last run's ``finished_at``), both from the first request; the ratio to the
  bare loop (raw aiohttp, nothing stored) running the same batch all at once
  just before, in this process; and the replicas' CPU per query. Every run
  must have succeeded, once: the model served 4 completions per query, and the
  first keys sent again give the same runs.
* *sse*: see :mod:`bench.sse_bench`.

The model server (bench/server.py) runs in a child process. See
docs/performance.md, "The control plane over HTTP".
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
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, replace  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

from agentrt._text import count  # noqa: E402
from bench.bare import BareLoop  # noqa: E402
from bench.common import FINAL_ANSWER, SHORT_TOOL_CALLS, machine_info, query_text  # noqa: E402
from bench.serve_proc import (  # noqa: E402
    TENANT,
    Serve,
    apply_resources,
    auth,
    make_key,
    start_replicas,
    store_of,
    submit,
    why,
)
from bench.server import TestServer  # noqa: E402
from bench.sse_bench import SseSettings, fanout_cases  # noqa: E402
from bench.sse_bench import render as render_sse  # noqa: E402

CASES: tuple[tuple[str, int], ...] = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))
"""(store, serve replicas) of the api workload."""
_UNFINISHED = "status=queued&status=running&status=waiting&status=waiting_approval"
_RESUBMITTED = 10  # queries sent again with their keys, which must give the same runs


@dataclass(frozen=True)
class ApiSettings:
    """The api workload's sizes."""

    queries: int = 500
    concurrency: int = 50  # submissions in flight at once
    latency_s: float = 0.05
    warmup: int = 20  # queries (waited for) before the measured batch


QUICK = ApiSettings(queries=100, warmup=5)


async def _submit_all(
    http: httpx.AsyncClient, bases: list[str], key: str, s: ApiSettings, tag: str
) -> list[str]:
    gate = asyncio.Semaphore(s.concurrency)

    async def one(i: int) -> str:
        async with gate:
            return await submit(
                http, bases[i % len(bases)], key, query_text("short", i), f"{tag}-{i}"
            )

    return await asyncio.gather(*(one(i) for i in range(s.queries)))


async def _until_done(http: httpx.AsyncClient, base: str, key: str, since: float) -> None:
    url = f"{base}/v1/runs?{_UNFINISHED}&limit=1&created_after={since}"
    deadline = time.monotonic() + 600
    while True:
        reply = await http.get(url, headers=auth(key))
        reply.raise_for_status()
        if not reply.json()["items"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("runs still unfinished after 600 s")
        await asyncio.sleep(0.05)


async def _runs_since(
    http: httpx.AsyncClient, base: str, key: str, since: float
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    cursor = ""
    while True:
        url = f"{base}/v1/runs?limit=1000&created_after={since}{cursor}"
        page = (await http.get(url, headers=auth(key))).raise_for_status().json()
        runs.extend(page["items"])
        if page["next_cursor"] is None:
            return runs
        cursor = f"&cursor={page['next_cursor']}"


async def _checked(
    http: httpx.AsyncClient, bases: list[str], key: str, ids: list[str], since: float, tag: str
) -> float:
    """The last run's ``finished_at``, once every run is checked: all succeeded, one
    per query, and keys sent again give the same runs."""
    runs = await _runs_since(http, bases[0], key, since)
    if sorted(r["id"] for r in runs) != sorted(ids) or len(set(ids)) != len(ids):
        raise RuntimeError(f"{count(len(runs), 'run')} for {count(len(ids), 'query')}")
    bad = [r for r in runs if r["status"] != "succeeded"]
    if bad:
        raise RuntimeError(f"{count(len(bad), 'run')} did not succeed, e.g. {bad[0]}")
    for i in range(min(_RESUBMITTED, len(ids))):
        again = await submit(http, bases[-1 - i % len(bases)], key, "again", f"{tag}-{i}")
        if again != ids[i]:
            raise RuntimeError(f"idempotency key {tag}-{i} gave a second run")
    return max(float(r["finished_at"]) for r in runs)


async def api_batch(
    model: TestServer, serves: list[Serve], key: str, s: ApiSettings
) -> dict[str, Any]:
    """One measured batch over ``serves`` (started, resources applied)."""
    bases = [serve.base for serve in serves]
    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them, so a
    # request never goes out on a connection the server is closing.
    limits = httpx.Limits(
        max_connections=s.concurrency, max_keepalive_connections=s.concurrency, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as http:
        warm = [submit(http, bases[i % len(bases)], key, query_text("short", i), f"warm-{i}",
                       wait=True) for i in range(s.warmup)]  # fmt: skip
        await asyncio.gather(*warm)
        model.reset()
        cpu_before = [serve.cpu_s() for serve in serves]
        start = time.time()
        ids = await _submit_all(http, bases, key, s, "q")
        submitted = time.time()
        await _until_done(http, bases[0], key, start)
        cpu = sum(serve.cpu_s() - b for serve, b in zip(serves, cpu_before, strict=True))
        served = model.served()
        last = await _checked(http, bases, key, ids, start, "q")
    expected = s.queries * (SHORT_TOOL_CALLS + 1)
    if served != expected:
        raise RuntimeError(f"the model served {served} completions, expected {expected}")
    return {
        "submitted_per_s": s.queries / (submitted - start),
        "queries_per_s": s.queries / (last - start),
        "wall_s": last - start,
        "serve_cpu_ms_per_query": cpu * 1000 / s.queries,
    }


async def bare_batch(url: str, s: ApiSettings) -> dict[str, Any]:
    """The same batch on the bare loop, all queries at once, in this process."""
    async with BareLoop(url) as bare:
        await asyncio.gather(*(bare.run(query_text("short", i)) for i in range(s.warmup)))
        start = time.perf_counter()
        outputs = await asyncio.gather(
            *(bare.run(query_text("short", i)) for i in range(s.queries))
        )
        wall = time.perf_counter() - start
    if any(output != FINAL_ANSWER for output in outputs):
        raise RuntimeError("the bare loop gave a wrong answer")
    return {"queries_per_s": s.queries / wall, "wall_s": wall}


async def api_case(
    model: TestServer, store: str, replicas: int, s: ApiSettings, tmp: Path
) -> dict[str, Any]:
    """The bare loop, then the batch through ``replicas`` serve processes on ``store``."""
    model.set_latency(s.latency_s)
    bare = await bare_batch(model.url, s)
    with store_of(store, tmp) as url:
        key = make_key(url, TENANT, "operator")
        serves = start_replicas(url, tmp, replicas)
        try:
            async with httpx.AsyncClient(timeout=60.0) as http:
                await apply_resources(http, serves[0], key, model.url)
            result = await api_batch(model, serves, key, s)
        except Exception as exc:
            said = " | ".join(serve.said(400) for serve in serves)
            raise RuntimeError(f"{why(exc)} (serve said: {said})") from exc
        finally:
            for serve in serves:
                serve.stop()
    return {**result, "store": store, "replicas": replicas, "bare": bare,
            "x_bare": bare["queries_per_s"] / result["queries_per_s"]}  # fmt: skip


async def api_cases(
    model: TestServer, s: ApiSettings, cases: tuple[tuple[str, int], ...] = CASES
) -> list[dict[str, Any]]:
    """Every case of the api workload; a case that fails says why in its row."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="agentrt-api-") as tmp:
        for store, replicas in cases:
            print(f"  api  {store} x{replicas} ...", file=sys.stderr, flush=True)
            try:
                rows.append(await api_case(model, store, replicas, s, Path(tmp)))
            except Exception as exc:
                rows.append({"store": store, "replicas": replicas, "error": why(exc)})
    return rows


def render_api(rows: list[dict[str, Any]], s: ApiSettings) -> str:
    """The api workload's table."""
    lines = [
        f"{s.queries} short queries (4 model calls each, model latency {s.latency_s * 1000:.0f} "
        f"ms), submitted {s.concurrency} at a time; the bare loop runs them all at once",
        "",
        "| store | serve replicas | submitted/s | completed queries/s | bare loop queries/s "
        "| x bare | serve CPU per query |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r['store']} | {r['replicas']} |"
        if "error" in r:
            lines.append(f"{head} error: {r['error']} | | | | |")
            continue
        lines.append(
            f"{head} {r['submitted_per_s']:.0f} | {r['queries_per_s']:.0f} | "
            f"{r['bare']['queries_per_s']:.0f} | {r['x_bare']:.2f}x | "
            f"{r['serve_cpu_ms_per_query']:.1f} ms |"
        )
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller batches (under a minute)")
    parser.add_argument("--only", choices=["api", "sse"], action="append", default=[])
    parser.add_argument("--queries", type=int, help="queries of the api batch")
    parser.add_argument("--clients", type=int, help="clients of the largest sse case")
    parser.add_argument("--stores", help="api cases, e.g. sqlite:1,postgresql:2")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    return parser.parse_args(argv)


def _cases(text: str | None) -> tuple[tuple[str, int], ...]:
    if not text:
        return CASES
    cases = []
    for item in text.split(","):
        store, _, n = item.strip().partition(":")
        if store not in ("sqlite", "postgresql") or not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--stores: give STORE:REPLICAS items, e.g. sqlite:1; not {item!r}")
        cases.append((store, int(n)))
    return tuple(cases)


async def run(argv: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """Run the chosen workloads; the results and their tables."""
    args = _parse(argv)
    api_s = QUICK if args.quick else ApiSettings()
    if args.queries:
        api_s = replace(api_s, queries=args.queries)
    sse_s = SseSettings.quick() if args.quick else SseSettings()
    if args.clients:
        sse_s = replace(sse_s, clients=(1, args.clients))
    only = args.only or ["api", "sse"]
    doc: dict[str, Any] = {"machine": machine_info()}
    tables = []
    with TestServer("process") as model:
        if "api" in only:
            rows = await api_cases(model, api_s, _cases(args.stores))
            doc["api"] = {"settings": asdict(api_s), "rows": rows}
            tables.append(render_api(doc["api"]["rows"], api_s))
        if "sse" in only:
            doc["sse"] = {"settings": asdict(sse_s), "rows": await fanout_cases(model, sse_s)}
            tables.append(render_sse(doc["sse"]["rows"], sse_s))
    return doc, "\n\n".join(tables)


def main(argv: list[str] | None = None) -> int:
    """Print the tables (or JSON); exit 1 if a case failed."""
    doc, tables = asyncio.run(run(argv))
    print(json.dumps(doc, indent=2) if "--json" in (argv or sys.argv[1:]) else tables)
    rows = [r for part in ("api", "sse") for r in doc.get(part, {}).get("rows", [])]
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
