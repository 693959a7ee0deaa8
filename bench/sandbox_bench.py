"""Sandbox start latency per backend, cold and from the warm pool.

``python bench/sandbox_bench.py [--runs 50] [--cold-runs 20] [--json]``

* cold: ``create()`` then ``exec(["true"])`` on a new sandbox;
* warm: take a ready sandbox from a :class:`SandboxPool` and ``exec(["true"])``,
  with the pool full before each run (calls spaced wider than a refill);
* hand-out: the ``acquire()`` alone;
* warm python: what the ``code`` tool does for Python: take a sandbox from a pool
  made for it (where the backend pre-starts the interpreter, see ``Prestart``)
  and run a ``main.py`` to its end; "start" is when its first statement ran
  (``time.time()`` inside the sandbox, which shares the host's clock).

Each figure is the median (and p90) of its runs, in milliseconds. Backends
whose probe fails here are listed with the reason.
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

from agentrt.tools.code import PYTHON_PRESTART as PYTHON  # noqa: E402
from agentrt.tools.sandbox.base import (  # noqa: E402
    Prestart,
    SandboxBackend,
    SandboxLimits,
    SandboxPolicy,
)
from agentrt.tools.sandbox.pool import SandboxPool  # noqa: E402
from agentrt.tools.sandbox.registry import BACKENDS, make_backend  # noqa: E402

__all__ = ["main", "sandbox_latency"]

POOL_SIZE = 2


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"median_ms": statistics.median(ordered) * 1e3, "p90_ms": p90 * 1e3}


async def _cold(backend: SandboxBackend, scratch: Path, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        sandbox = await backend.create(SandboxPolicy(scratch), SandboxLimits())
        result = await sandbox.exec(["true"])
        samples.append(time.perf_counter() - start)
        await sandbox.terminate()
        assert result.reason == "ok", result
    return samples


async def _warm(
    backend: SandboxBackend, workdir: Path, runs: int, prestart: Prestart | None = None
) -> tuple[list[float], list[float], list[float]]:
    pool = SandboxPool(
        backend,
        SandboxPolicy(workdir),
        SandboxLimits(),
        workdir=workdir,
        size=POOL_SIZE,
        prestart=prestart,
    )
    argv = list(prestart.argv) if prestart else ["true"]
    total, handout, started = [], [], []
    try:
        for _ in range(runs):
            await pool.fill()
            for lease in pool._idle:  # the program the code tool would have moved in
                (lease.scratch / "main.py").write_text("import time\nprint(time.time())\n")
            wall, start = time.time(), time.perf_counter()
            lease = await pool.acquire()
            taken = time.perf_counter()
            result = await lease.sandbox.exec(argv)
            total.append(time.perf_counter() - start)
            handout.append(taken - start)
            if prestart is not None:
                started.append(float(result.stdout) - wall)
            await lease.release()
            assert result.reason == "ok", result
    finally:
        await pool.close()
    return total, handout, started


async def sandbox_latency(runs: int = 50, cold_runs: int = 20) -> list[dict[str, Any]]:
    """Measure every backend that works here; one row per backend."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="agentrt-sandbox-bench-") as tmp:
        for name in BACKENDS:
            workdir = Path(tmp) / name
            workdir.mkdir()
            try:
                backend = make_backend(name, workdir=workdir)
                probe = await backend.probe()
            except Exception as exc:
                rows.append({"backend": name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            if not probe.ok:
                rows.append({"backend": name, "error": probe.detail})
                continue
            scratch = workdir / "cold"
            scratch.mkdir()
            await _cold(backend, scratch, 3)  # warm the page cache, not measured
            cold = await _cold(backend, scratch, cold_runs)
            warm, handout, _ = await _warm(backend, workdir, runs)
            python, _, python_start = await _warm(backend, workdir, runs, PYTHON)
            rows.append(
                {
                    "backend": name,
                    "cold": _ms(cold),
                    "warm": _ms(warm),
                    "warm_python": _ms(python),
                    "warm_python_start": _ms(python_start),
                    "handout": _ms(handout),
                    "runs": runs,
                    "cold_runs": cold_runs,
                }
            )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width table."""
    lines = [
        f"{'backend':<11} {'cold create+exec':>18} {'warm pool+exec':>16} "
        f"{'warm python':>16} {'python start':>13} {'hand-out':>10}",
        f"{'':<11} {'median / p90 ms':>18} {'median / p90 ms':>16} "
        f"{'median / p90 ms':>16} {'median ms':>13} {'median ms':>10}",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['backend']:<11} unavailable: {row['error']}")
            continue
        cold, warm, python = row["cold"], row["warm"], row["warm_python"]
        lines.append(
            f"{row['backend']:<11} "
            f"{cold['median_ms']:>9.1f} / {cold['p90_ms']:<6.1f} "
            f"{warm['median_ms']:>7.1f} / {warm['p90_ms']:<6.1f} "
            f"{python['median_ms']:>7.1f} / {python['p90_ms']:<6.1f} "
            f"{row['warm_python_start']['median_ms']:>13.1f} "
            f"{row['handout']['median_ms']:>10.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="warm-pool runs per backend")
    parser.add_argument("--cold-runs", type=int, default=20, help="cold runs per backend")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    rows = asyncio.run(sandbox_latency(args.runs, args.cold_runs))
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
