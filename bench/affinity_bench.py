"""Prefix-cache hits with session affinity on and off, over three replica endpoints.

``python bench/affinity_bench.py [--sessions 20] [--turns 4] [--json]``

Three test model servers, each with a simulated prefix cache of its own
(``ModelTestServer(prefix_cache=True)``), serve one Model as its replicas. Each of
``--sessions`` sessions takes ``--turns`` turns of two model steps (a tool call,
then the answer) under long shared instructions. With affinity on (the default,
``affinity.sticky: true``) every step of a session goes to its replica; off
(``sticky: false``) each call goes to the next replica in turn, as a plain load
balancer spreads them. Reported for each: the hit rate (cached prompt tokens over
prompt tokens, as the servers counted them and as ``agentrt cache`` reads them from
the steps), the sessions per replica, and the wall time.
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
from typing import Any  # noqa: E402

from agentrt.engine import cache_report  # noqa: E402
from agentrt.engine.runtime import Runtime  # noqa: E402
from agentrt.models.testserver import ModelTestServer  # noqa: E402
from agentrt.spec import Resource, ScriptedRule, parse_resource  # noqa: E402
from agentrt.state import SqliteStore  # noqa: E402

__all__ = ["cache_hits", "main", "render"]

REPLICAS = 3
ANSWER = (
    "The answer is {last_tool_result}. " + "Here is the reasoning behind it, step by step. " * 8
)
INSTRUCTIONS = "You are a support agent. Look things up with the add tool first. " * 4
SCRIPT = [
    ScriptedRule.model_validate(
        {
            "steps": [
                {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
                {
                    "content": "The answer is {last_tool_result}. "
                    + "Here is the reasoning behind it, step by step. " * 8
                },
            ]
        }
    )
]


def _resources(urls: list[str], sticky: bool) -> list[Resource]:
    docs: list[dict[str, Any]] = [
        {
            "kind": "Model",
            "metadata": {"name": "m"},
            "spec": {
                "provider": "openai", "base_url": urls[0], "replicas": urls[1:], "max_retries": 0,
                "affinity": {"sticky": sticky},
                "pricing": {"input_per_mtok": 3.0, "cached_input_per_mtok": 0.3,
                            "output_per_mtok": 15.0},
            },
        },
        {"kind": "Tool", "metadata": {"name": "add"},
         "spec": {"kind": "python", "callable": "bench.common:add", "idempotent": True}},
        {"kind": "Agent", "metadata": {"name": "bot"},
         "spec": {"model": "m", "tools": ["add"], "instructions": INSTRUCTIONS}},
    ]  # fmt: skip
    return [parse_resource({"apiVersion": "agentrt.dev/v1", **doc}) for doc in docs]


async def _one(sticky: bool, sessions: int, turns: int) -> dict[str, Any]:
    servers = [ModelTestServer(SCRIPT, prefix_cache=True) for _ in range(REPLICAS)]
    urls = [await server.start() for server in servers]
    try:
        with tempfile.TemporaryDirectory(prefix="agentrt-affinity-bench-") as tmp:
            async with await SqliteStore.open(Path(tmp) / "bench.db") as store:
                async with Runtime(store) as rt:
                    await rt.apply(_resources(urls, sticky))
                    started = time.perf_counter()
                    for turn in range(turns):
                        await asyncio.gather(
                            *(rt.run("bot", f"question {turn} of {i}", session=f"s{i}")
                              for i in range(sessions))
                        )  # fmt: skip
                    wall = time.perf_counter() - started
                report = await cache_report(store, namespace="default", limit=sessions * turns)
    finally:
        for server in servers:
            await server.stop()
    prompt = sum(s.prefix_cache.prompt_tokens for s in servers if s.prefix_cache)
    cached = sum(s.prefix_cache.hits for s in servers if s.prefix_cache)
    steps = report.by_model["m"]
    if (steps.prompt_tokens, steps.cached_tokens) != (prompt, cached):
        raise AssertionError("the steps recorded other token counts than the servers reported")
    return {
        "hit_rate": cached / prompt,
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "calls_per_replica": [s.completions_served for s in servers],
        "wall_s": wall,
    }


async def cache_hits(sessions: int = 20, turns: int = 4) -> dict[str, Any]:
    """The figures with affinity on and off."""
    return {
        "sessions": sessions,
        "turns": turns,
        "on": await _one(True, sessions, turns),
        "off": await _one(False, sessions, turns),
    }


def render(row: dict[str, Any]) -> str:
    """The figures as a small table."""
    lines = [
        f"affinity workload: {row['sessions']} sessions x {row['turns']} turns "
        f"(2 model steps each) over {REPLICAS} replicas with a prefix cache each",
        f"  {'affinity':<9} {'hit rate':>9} {'prompt':>9} {'cached':>9}  calls per replica",
    ]
    for name in ("on", "off"):
        r = row[name]
        lines.append(
            f"  {name:<9} {r['hit_rate']:>9.1%} {r['prompt_tokens']:>9} {r['cached_tokens']:>9}  "
            f"{r['calls_per_replica']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    row = asyncio.run(cache_hits(args.sessions, args.turns))
    print(json.dumps(row, indent=2) if args.json else render(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
