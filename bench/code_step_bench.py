"""A code step through a whole run, per sandbox backend, cold and warm, and where the time goes.

``python bench/code_step_bench.py [--steps 20] [--json]``

Each backend runs in a fresh process: a Runtime over SQLite, an Agent on the
offline scripted model whose every step calls a ``code`` tool (a few lines of
Python). A step's cost is the time from its intent in the log to the next
step's intent: the sandbox, the files in and out, the scratch snapshot and the
runtime's own bookkeeping, as a run sees it.

* cold: the first code step of the process (probing the backend, the first
  sandboxes, Python's start);
* warm: the median of the steps after it (the warm pool refills between steps);
* bare: the same Python program as a plain ``python3 main.py`` subprocess of
  the same process, the floor any sandbox is compared with (the ratio);
* breakdown: the warm step's parts through the sandbox API, medians: taking a
  sandbox from the pool, copying the run's files in and setting the quota,
  running the program, ending the sandbox, copying the files back normalised,
  removing its volume, and the snapshot the run takes after the step.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path[0] = str(_ROOT)  # run as a script: import the bench package

import argparse  # noqa: E402
import asyncio  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

__all__ = ["code_steps", "main", "render"]

BACKENDS = ("bubblewrap", "gvisor", "process")
CODE = "import json, os\nrows = [i * i for i in range(2000)]\nprint(json.dumps(sum(rows)))\n"
PARTS = ("hand-out", "files in", "program", "end", "files out", "release", "snapshot")


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3 if values else float("nan")


async def _run_steps(backend: str, steps: int, root: Path) -> dict[str, Any]:
    """In this process: one run of ``steps`` code steps, then the bare program and the parts."""
    from agentrt import Runtime
    from agentrt.spec import parse_resource

    script = [{"tool_calls": [{"name": "py", "arguments": {"code": CODE}}]}] * steps
    docs: list[dict[str, Any]] = [
        {
            "kind": "Model",
            "metadata": {"name": "m"},
            "spec": {"provider": "scripted", "script": [{"steps": [*script, {"content": "ok"}]}]},
        },
        {
            "kind": "Tool",
            "metadata": {"name": "py"},
            "spec": {"kind": "code", "code": {"sandbox": backend, "allow_unsafe": True}},
        },
        {
            "kind": "Agent",
            "metadata": {"name": "coder"},
            "spec": {"model": "m", "tools": ["py"], "loop": {"max_steps": 2 * steps + 5}},
        },
    ]
    resources = [parse_resource({"apiVersion": "agentrt.dev/v1", **d}) for d in docs]
    async with Runtime(root / "agentrt.db", scratch_root=root / "runs") as rt:
        await rt.apply(resources)
        result = await rt.run("coder", "go")
        events = await rt.store.read_events(result.run_id)
    if result.status != "succeeded":
        raise RuntimeError(f"the run ended {result.status}: {result.reason}")
    intents = [e.ts for e in events if e.type in ("model.call", "tool.call")]
    intents.append(events[-1].ts)
    tool_intents = [e.ts for e in events if e.type == "tool.call"]
    walls = [nxt - ts for ts, nxt in itertools.pairwise(intents) if ts in tool_intents]
    return {
        "backend": backend,
        "cold_ms": walls[0] * 1e3,
        "warm_ms": _median_ms(walls[1:]),
        "bare_ms": await _bare(root, steps),
        "parts_ms": await _parts(backend, root, steps),
        "steps": steps,
    }


async def _bare(root: Path, runs: int) -> float:
    folder = root / "bare"
    folder.mkdir()
    (folder / "main.py").write_text(CODE)
    # The interpreter sandboxes run: the system's, as found on a plain PATH.
    python = shutil.which("python3", path="/usr/bin:/bin") or "python3"
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            python, "-s", "-E", "main.py", cwd=folder, stdout=asyncio.subprocess.PIPE
        )
        await proc.communicate()
        samples.append(time.perf_counter() - start)
    return _median_ms(samples)


async def _parts(backend_name: str, root: Path, runs: int) -> dict[str, float]:
    """The warm step's parts, timed through the same calls the code tool makes."""
    from agentrt.engine.scratch import ScratchSpace
    from agentrt.tools.code import PYTHON_PRESTART
    from agentrt.tools.sandbox.base import SandboxLimits, SandboxPolicy
    from agentrt.tools.sandbox.pool import SandboxPool
    from agentrt.tools.sandbox.registry import make_backend
    from agentrt.tools.sandbox.volume import DiskQuota

    workdir = root / "parts"
    backend = make_backend(backend_name, workdir=workdir)
    prestart = PYTHON_PRESTART if backend_name == "gvisor" else None
    pool = SandboxPool(
        backend, SandboxPolicy(workdir), SandboxLimits(), workdir=workdir, size=2,
        prestart=prestart, user=backend.user,
    )  # fmt: skip
    quota = DiskQuota(64 << 20, 2000, 256 << 20, 10000)
    space = ScratchSpace(root / "parts-runs")
    run_dir = space.dir_of("run")
    (run_dir / "data.csv").write_text("a,b\n" * 1000)
    times: dict[str, list[float]] = {part: [] for part in PARTS}
    argv = list(PYTHON_PRESTART.argv)
    try:
        for step in range(runs):
            await pool.fill()
            (run_dir / "main.py").write_text(CODE)
            marks = [time.perf_counter()]
            lease = await pool.acquire()
            marks.append(time.perf_counter())
            await lease.adopt(run_dir, quota)
            marks.append(time.perf_counter())
            result = await lease.sandbox.exec(argv)
            marks.append(time.perf_counter())
            await lease.sandbox.terminate()
            marks.append(time.perf_counter())
            await lease.collect(run_dir, quota)
            marks.append(time.perf_counter())
            await lease.release()
            marks.append(time.perf_counter())
            await asyncio.to_thread(space.snapshot, "run", step + 1)
            marks.append(time.perf_counter())
            if result.reason != "ok":
                raise RuntimeError(f"{backend_name}: {result}")
            for part, (start, end) in zip(PARTS, itertools.pairwise(marks), strict=True):
                times[part].append(end - start)
    finally:
        await pool.close()
    return {part: _median_ms(values) for part, values in times.items()}


def code_steps(steps: int = 20) -> list[dict[str, Any]]:
    """Every backend's row, each measured in a fresh process (so the cold step is cold)."""
    rows = []
    for backend in BACKENDS:
        with tempfile.TemporaryDirectory(prefix="agentrt-code-bench-") as tmp:
            env = {**os.environ, "AGENTRT_SANDBOX_DIR": str(Path(tmp) / "sandboxes")}
            done = subprocess.run(
                [sys.executable, __file__, "--child", backend, "--steps", str(steps), tmp],
                capture_output=True, text=True, env=env, check=False, timeout=600,
            )  # fmt: skip
            try:
                rows.append(json.loads(done.stdout))
            except ValueError:
                rows.append({"backend": backend, "error": (done.stderr or done.stdout)[-300:]})
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """The rows as two fixed-width tables: the step, then where its time goes."""
    lines = [
        "code step through a whole run (ms, medians; ratio = warm / bare python3 subprocess)",
        f"{'backend':<11} {'cold':>8} {'warm':>8} {'bare':>8} {'ratio':>6}",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['backend']:<11} unavailable: {row['error'].strip()}")
            continue
        lines.append(
            f"{row['backend']:<11} {row['cold_ms']:>8.1f} {row['warm_ms']:>8.1f} "
            f"{row['bare_ms']:>8.1f} {row['warm_ms'] / row['bare_ms']:>6.2f}"
        )
    lines += ["", "where a warm step's time goes (ms, medians)"]
    lines.append(f"{'backend':<11} " + " ".join(f"{part:>9}" for part in PARTS))
    for row in rows:
        if "error" not in row:
            parts = row["parts_ms"]
            lines.append(f"{row['backend']:<11} " + " ".join(f"{parts[p]:>9.1f}" for p in PARTS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``--child`` is the measured process of one backend)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="code steps per run")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("root", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row = asyncio.run(_run_steps(args.child, args.steps, Path(args.root)))
        print(json.dumps(row))
        return 0
    rows = code_steps(args.steps)
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
