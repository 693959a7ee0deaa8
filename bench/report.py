"""The plain-text report: machine, one table per workload, and the targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.common import LONG_TOOL_CALLS, SHORT_TOOL_CALLS
from bench.systems import SystemDef
from bench.workloads import Settings

__all__ = ["TARGETS", "render", "targets"]

TARGETS = {
    "step_overhead_ms": 1.0,  # agentrt ms/step above the bare loop
    "throughput_vs_ideal": 1.3,  # agentrt wall time / latency-bound ideal
    "bytes_per_run": 20_000,  # per 20-tool-call run (1 KB = 1000 bytes)
}

Cell = dict[str, Any]


def _table(header: list[str], rows: list[list[str]], notes: list[str]) -> list[str]:
    """Rows aligned under the header (first column left, others right), then the notes."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, ["-" * w for w in widths], *rows]:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        out.append("  ".join([first, *rest]).rstrip())
    return out + [f"  ({note})" for note in notes]


def _note(label: str, cell: Cell) -> str | None:
    if "skipped" in cell:
        return str(cell["skipped"])
    if "error" in cell:
        return f"{label}: ERROR: {cell['error']}"
    return None


def _rows(
    cells: dict[str, Cell], systems: list[SystemDef], fmt: Callable[[SystemDef, Cell], list[str]]
) -> tuple[list[list[str]], list[str]]:
    """Table rows of the systems measured, and notes for those skipped or failed."""
    rows, notes = [], []
    for sd in systems:
        cell = cells.get(sd.name)
        if cell is None:
            continue
        note = _note(sd.label, cell)
        if note is not None:
            notes.append(note)
        else:
            rows.append(fmt(sd, cell))
    return rows, notes


def _step_row(bare: float | None, log: float | None) -> Callable[[SystemDef, Cell], list[str]]:
    def fmt(sd: SystemDef, cell: Cell) -> list[str]:
        ms = cell["ms_per_step"]
        return [
            sd.label,
            f"{ms:.3f}",
            f"{cell['run_ms']['median']:.1f}",
            f"{cell['run_ms']['p90']:.1f}",
            "" if bare is None or sd.name == "bare" else f"{ms - bare:+.3f}",
            "" if bare is None or sd.name == "bare" else f"{ms / bare:.2f}x",
            "" if log is None or sd.name.startswith("bare") else f"{ms - log:+.3f}",
        ]

    return fmt


def _throughput_row(sd: SystemDef, cell: Cell) -> list[str]:
    return [
        sd.label,
        f"{cell['wall_s']['median']:.3f}",
        f"{cell['queries_per_s']:.1f}",
        f"{cell['vs_ideal']:.2f}x",
    ]


def _storage_row(sd: SystemDef, cell: Cell) -> list[str]:
    return [
        sd.label,
        f"{cell['bytes_per_run'] / 1000:.1f}",
        f"{cell['used_bytes_per_run'] / 1000:.1f}",
        f"{cell['payload_bytes_per_run'] / 1000:.1f}",
    ]


def targets(results: dict[str, dict[str, Cell]], s: Settings) -> dict[str, dict[str, Any]]:
    """Each target with agentrt's measured value and whether it is met."""
    out: dict[str, dict[str, Any]] = {}
    step = results.get("step", {})
    if "ms_per_step" in step.get("agentrt", {}) and "ms_per_step" in step.get("bare", {}):
        value = step["agentrt"]["ms_per_step"] - step["bare"]["ms_per_step"]
        limit = TARGETS["step_overhead_ms"]
        out["step"] = {"value": value, "limit": limit, "met": value < limit}
    tp = results.get("throughput", {}).get("agentrt", {})
    if "vs_ideal" in tp:
        limit = TARGETS["throughput_vs_ideal"]
        out["throughput"] = {
            "value": tp["vs_ideal"],
            "limit": limit,
            "met": tp["vs_ideal"] <= limit,
        }
    st = results.get("storage", {}).get("agentrt", {})
    if "bytes_per_run" in st:
        limit = TARGETS["bytes_per_run"]
        value = st["bytes_per_run"]
        out["storage"] = {"value": value, "limit": limit, "met": value < limit}
    return out


def _verdict(t: dict[str, Any] | None, text: str) -> str:
    if t is None:
        return f"target: {text}: not measured (needs the agentrt and bare rows)"
    return f"target: {text}: {'MET' if t['met'] else 'MISSED'}"


def render(
    machine: dict[str, Any],
    server: str,
    s: Settings,
    results: dict[str, dict[str, Cell]],
    systems: list[SystemDef],
) -> str:
    """The whole report as text."""
    ram = f", {machine['ram_gib']} GiB RAM" if machine.get("ram_gib") else ""
    lines = [
        "agentrt benchmarks",
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['arch']}{ram}, "
        f"{machine['os']}",
        f"python {machine['python']}, SQLite {machine['sqlite']}, aiohttp {machine['aiohttp']}, "
        f"orjson {machine['orjson']}, langgraph {machine['langgraph'] or 'not installed'}",
        f"agentrt {machine['agentrt']} at commit {machine.get('commit') or 'unknown'}; "
        f"model server: ModelTestServer (scripted) in a {server}; tool: python add(a, b)",
    ]
    t = targets(results, s)
    if "step" in results:
        cells = results["step"]
        lines += [
            "",
            f"1. per-step overhead: one run = {LONG_TOOL_CALLS} model turns with one add() call "
            f"each, then the answer ({LONG_TOOL_CALLS + 1} model calls); model latency 0;",
            f"   ms/step = median run time / {LONG_TOOL_CALLS}; {s.step_runs} runs per system "
            f"after {s.step_warmup} warm-up, one at a time, systems taking turns",
        ]
        header = ["system", "ms/step", "run ms", "p90 ms", "vs bare", "x bare", "vs bare+log"]
        bare = cells.get("bare", {}).get("ms_per_step")
        log = cells.get("bare-sqlite", {}).get("ms_per_step")
        lines += _table(header, *_rows(cells, systems, _step_row(bare, log)))
        if "step" in t:
            text = f"agentrt < 1 ms/step above the bare loop ({t['step']['value']:+.3f} ms/step)"
        else:
            text = "agentrt < 1 ms/step above the bare loop"
        lines.append(_verdict(t.get("step"), text))
    if "throughput" in results:
        cells = results["throughput"]
        ideal = next((c["ideal_s"] for c in cells.values() if "ideal_s" in c), None)
        ideal_text = f"{ideal:.2f} s" if ideal is not None else "n/a"
        lines += [
            "",
            f"2. throughput: {s.queries} queries x ({SHORT_TOOL_CALLS} tool calls + answer = "
            f"{SHORT_TOOL_CALLS + 1} model calls), "
            f"{s.concurrency} in flight, model latency {s.latency_s * 1000:g} ms;",
            f"   median of {s.throughput_reps} batches after a warm-up batch; "
            f"latency-bound ideal {ideal_text}",
        ]
        header = ["system", "wall s", "queries/s", "vs ideal"]
        lines += _table(header, *_rows(cells, systems, _throughput_row))
        text = "agentrt within 1.3x of the ideal"
        if "throughput" in t:
            text += f" ({t['throughput']['value']:.2f}x)"
        lines.append(_verdict(t.get("throughput"), text))
    if "storage" in results:
        cells = results["storage"]
        runs = next((c["runs"] for c in cells.values() if "runs" in c), s.storage_runs)
        lines += [
            "",
            f"3. storage per {LONG_TOOL_CALLS}-tool-call run: database growth over {runs} runs "
            "after a WAL checkpoint, / runs (KB = 1000 bytes)",
        ]
        header = ["system", "KB/run (file)", "KB/run (used)", "KB/run (payload)"]
        lines += _table(header, *_rows(cells, systems, _storage_row))
        text = "agentrt < 20 KB per 20-step run"
        if "storage" in t:
            text += f" ({t['storage']['value'] / 1000:.1f} KB)"
        lines.append(_verdict(t.get("storage"), text))
    return "\n".join(lines)
