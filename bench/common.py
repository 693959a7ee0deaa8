"""What every system under test shares: the script, the tool, the inputs and small helpers.

The scripted model answers a query whose text starts with ``long`` with
:data:`LONG_TOOL_CALLS` turns that each request one ``add`` call, then a final
answer; a query starting with ``short`` does the same with
:data:`SHORT_TOOL_CALLS` turns.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from agentrt.spec.resources import ScriptedRule

__all__ = [
    "FINAL_ANSWER",
    "INSTRUCTIONS",
    "LONG_TOOL_CALLS",
    "MODEL_NAME",
    "SHORT_TOOL_CALLS",
    "TOOL_DEFS",
    "add",
    "add_async",
    "db_footprint",
    "machine_info",
    "percentile",
    "query_text",
    "script",
    "summarize",
]

LONG_TOOL_CALLS = 20
"""Tool calls in the per-step and storage workloads (one per model turn)."""

SHORT_TOOL_CALLS = 3
"""Tool calls per query in the throughput workload (one per model turn)."""

FINAL_ANSWER = "The sum is 5."
INSTRUCTIONS = "You are a calculator. Use the add tool for every sum."
MODEL_NAME = "m"

TOOL_DEFS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "additionalProperties": False,
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
                "type": "object",
            },
        },
    }
]
"""The tool as every system offers it to the model (the schema agentrt derives for ``add``)."""


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def add_async(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def script() -> list[ScriptedRule]:
    """The scripted model: ``long ...`` and ``short ...`` queries, one ``add`` per turn."""
    call = {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}
    final = {"content": FINAL_ANSWER}
    return [
        ScriptedRule.model_validate(
            {"match": "^long", "steps": [call] * LONG_TOOL_CALLS + [final]}
        ),
        ScriptedRule.model_validate(
            {"match": "^short", "steps": [call] * SHORT_TOOL_CALLS + [final]}
        ),
    ]


def query_text(kind: str, index: int) -> str:
    """The user message of query ``index`` of a workload (``kind`` is ``long`` or ``short``)."""
    return f"{kind} query {index}: add 2 and 3"


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(values: list[float]) -> dict[str, float]:
    """Median, minimum, 90th percentile and count of a list of samples."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "p90": percentile(values, 90),
        "n": len(values),
    }


def db_footprint(path: Path) -> dict[str, int]:
    """Checkpoint a SQLite file's WAL and measure it.

    Returns ``bytes`` (page_count x page_size), ``free_bytes`` (pages on the
    freelist) and ``wal_bytes`` left after the checkpoint (0 when it succeeded).
    Call it only while no other connection has the file open.
    """
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    return {
        "bytes": pages * page_size,
        "free_bytes": free * page_size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    """The repository's commit, with ``+changes`` when agentrt/ has uncommitted edits."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "agentrt"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+changes" if dirty else head


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python, SQLite and the versions of the libraries used."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "ram_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "agentrt": _version("agentrt"),
        "commit": _commit(),
        "aiohttp": _version("aiohttp"),
        "orjson": _version("orjson"),
        "langgraph": _version("langgraph"),
        "langgraph-checkpoint-sqlite": _version("langgraph-checkpoint-sqlite"),
    }
