"""Run the benchmarks and print a table: ``python bench/run.py [--quick] [--only NAME] [--json]``.

Workloads: ``step`` (per-step overhead), ``throughput``, ``storage``, ``sandbox``
(start latency, and a code step through a whole run per backend), ``team``
(the graph executor's cost per node) and ``affinity`` (prefix-cache hit rate over
three replicas, session affinity on and off).
Systems: ``bare``, ``bare-sqlite``, ``agentrt`` (its store on SQLite),
``agentrt-postgres`` (the same on PostgreSQL, in a fresh schema dropped after;
``AGENTRT_BENCH_POSTGRES`` names the database, default the local test server;
skipped when it cannot be reached, and in ``storage``, which measures a SQLite
file), ``langgraph`` and the extra variants ``agentrt-budget``, ``agentrt-rate-limit``,
``agentrt-async-tool``, ``agentrt-effectful``, ``langgraph-normal`` and
``langgraph-messages`` (run with ``--all`` or when named). ``--only`` takes workload
and system names, comma-separated or repeated. See docs/performance.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as a script: import the bench package, not its modules as top-level names.
    sys.path[0] = str(_ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from typing import Any  # noqa: E402

from bench.affinity_bench import cache_hits  # noqa: E402
from bench.affinity_bench import render as render_affinity  # noqa: E402
from bench.code_step_bench import code_steps  # noqa: E402
from bench.code_step_bench import render as render_code_steps  # noqa: E402
from bench.common import machine_info  # noqa: E402
from bench.report import render, targets  # noqa: E402
from bench.sandbox_bench import render as render_sandbox  # noqa: E402
from bench.sandbox_bench import sandbox_latency  # noqa: E402
from bench.server import TestServer  # noqa: E402
from bench.systems import LANGGRAPH_MISSING, SYSTEMS, SystemDef, langgraph_available  # noqa: E402
from bench.team_bench import render as render_team  # noqa: E402
from bench.team_bench import team_overhead  # noqa: E402
from bench.workloads import Settings, per_step, storage, throughput  # noqa: E402

Workload = Callable[[SystemDef, str, Path, Settings], Awaitable[dict[str, Any]]]

# "step" measures all systems together (taking turns), the others one system at a time.
WORKLOADS: dict[str, Workload | None] = {"step": None, "throughput": throughput, "storage": storage}
SANDBOX = "sandbox"  # sandbox start latency, and a code step through a whole run per backend
TEAM = "team"  # the graph executor's cost per node (offline model, no server)
AFFINITY = "affinity"  # prefix-cache hits over three replicas, affinity on and off
_ALIASES = {"per-step": "step", "overhead": "step", "bytes": "storage", "qps": "throughput"}

QUICK = Settings(
    step_warmup=1,
    step_runs=7,
    queries=200,
    concurrency=50,
    throughput_reps=1,
    throughput_warmup=50,
    storage_runs=5,
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="agentrt benchmarks: per-step overhead, throughput and bytes stored per run.",
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions (a smoke test)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="workloads (step, throughput, storage) and/or systems "
        f"({', '.join(s.name for s in SYSTEMS)}); comma-separated or repeated",
    )
    parser.add_argument("--all", action="store_true", help="also run the extra variants")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--save", metavar="FILE", help="also write the JSON results to FILE")
    parser.add_argument(
        "--server",
        choices=["process", "thread"],
        default="process",
        help="run the model server in a child process (default) or a thread of this one",
    )
    parser.add_argument("--runs", type=int, help="measured runs of the per-step workload")
    parser.add_argument("--db-dir", help="directory for the databases (default: system temp)")
    return parser.parse_args(argv)


def _select(args: argparse.Namespace) -> tuple[list[str], list[SystemDef]]:
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    system_names = {s.name for s in SYSTEMS}
    workloads, systems = [], set()
    for name in names:
        name = _ALIASES.get(name, name)
        if name in WORKLOADS or name in (SANDBOX, TEAM, AFFINITY):
            workloads.append(name)
        elif name in system_names:
            systems.add(name)
        else:
            known = ", ".join([*WORKLOADS, SANDBOX, TEAM, AFFINITY, *system_names])
            raise SystemExit(f"--only: unknown name {name!r}; known: {known}")
    chosen = [
        s for s in SYSTEMS if (s.name in systems) or (not systems and (args.all or not s.extra))
    ]
    every = [*WORKLOADS, SANDBOX, TEAM, AFFINITY]
    return [w for w in every if not workloads or w in workloads], chosen


def _skip(workload: str, sd: SystemDef) -> dict[str, Any] | None:
    if sd.langgraph and not langgraph_available():
        return {"skipped": LANGGRAPH_MISSING}
    if workload == "storage" and not sd.durable:
        return {"skipped": f"{sd.label}: stores nothing"}
    if workload == "storage" and sd.no_storage is not None:
        return {"skipped": f"{sd.label}: not measured: {sd.no_storage}"}
    if sd.unavailable is not None and (reason := sd.unavailable()) is not None:
        return {"skipped": reason}
    return None


def _checked_calls(server: TestServer, expected: int) -> str | None:
    served = server.served()
    if served != expected:
        return f"server served {served} completions, expected {expected}"
    return None


def _measure_steps(
    server: TestServer, systems: list[SystemDef], s: Settings, db_dir: str | None
) -> dict[str, dict[str, Any]]:
    cells = {sd.name: skip for sd in systems if (skip := _skip("step", sd)) is not None}
    runnable = [sd for sd in systems if sd.name not in cells]
    if not runnable:
        return cells
    server.set_latency(0.0)
    server.reset()
    print(f"  step       {', '.join(sd.name for sd in runnable)} ...", file=sys.stderr, flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="agentrt-bench-", dir=db_dir) as tmp:
            results = asyncio.run(per_step(runnable, server.url, Path(tmp), s))
    except Exception as exc:
        return {**cells, **{sd.name: {"error": f"{type(exc).__name__}: {exc}"} for sd in runnable}}
    problem = _checked_calls(server, results.pop("_total")["model_calls"])
    if problem:
        results = {name: {"error": problem} for name in results}
    return {sd.name: cells.get(sd.name) or results[sd.name] for sd in systems}


def _measure(
    server: TestServer, workload: str, sd: SystemDef, s: Settings, db_dir: str | None
) -> dict[str, Any]:
    skip = _skip(workload, sd)
    if skip is not None:
        return skip
    run = WORKLOADS[workload]
    assert run is not None
    server.set_latency(s.latency_s if workload == "throughput" else 0.0)
    server.reset()
    print(f"  {workload:<10} {sd.name} ...", file=sys.stderr, flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="agentrt-bench-", dir=db_dir) as tmp:
            result = asyncio.run(run(sd, server.url, Path(tmp) / "bench.db", s))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    problem = _checked_calls(server, result["model_calls"])
    return {"error": problem} if problem else result


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads on the selected systems and print the report."""
    args = _parse(argv)
    settings = QUICK if args.quick else Settings()
    if args.runs is not None:
        settings = Settings(**{**settings.__dict__, "step_runs": args.runs})
    workloads, systems = _select(args)
    machine = machine_info()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    sandbox_rows: list[dict[str, Any]] | None = None
    code_rows: list[dict[str, Any]] | None = None
    team_row: dict[str, float] | None = None
    affinity_row: dict[str, Any] | None = None
    if AFFINITY in workloads:
        workloads.remove(AFFINITY)
        affinity_row = asyncio.run(cache_hits(*((5, 2) if args.quick else (20, 4))))
    if TEAM in workloads:
        workloads.remove(TEAM)
        team_row = asyncio.run(team_overhead(5 if args.quick else 20))
    if SANDBOX in workloads:
        workloads.remove(SANDBOX)
        runs, cold = (10, 5) if args.quick else (50, 20)
        sandbox_rows = asyncio.run(sandbox_latency(runs, cold))
        code_rows = code_steps(10 if args.quick else 20)
    with TestServer(args.server) as server:
        for workload in workloads:
            if workload == "step":
                results[workload] = _measure_steps(server, systems, settings, args.db_dir)
                continue
            results[workload] = {
                sd.name: _measure(server, workload, sd, settings, args.db_dir) for sd in systems
            }
    doc = {
        "machine": machine,
        "server": args.server,
        "settings": settings.__dict__,
        "results": results,
        "targets": targets(results, settings),
        "sandbox": sandbox_rows,
        "code_steps": code_rows,
        "team": team_row,
        "affinity": affinity_row,
    }
    if args.save:
        Path(args.save).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render(machine, f"{args.server}", settings, results, systems))
        if sandbox_rows is not None:
            print()
            print(render_sandbox(sandbox_rows))
        if code_rows is not None:
            print()
            print(render_code_steps(code_rows))
        if team_row is not None:
            print()
            print(render_team(team_row))
        if affinity_row is not None:
            print()
            print(render_affinity(affinity_row))
    failed = any("error" in cell for cells in results.values() for cell in cells.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
