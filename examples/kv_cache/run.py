"""Session affinity over three replicas with a prefix cache each, offline.

python examples/kv_cache/run.py [--store FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from agentrt import Runtime
from agentrt.engine import cache_report, events
from agentrt.models import ModelTestServer
from agentrt.spec import ScriptedRule, parse_resource

SESSIONS = ["ada", "grace", "edsger", "barbara"]
SCRIPT = [ScriptedRule.model_validate({"steps": [{"content": "Noted: {input}"}]})]
INSTRUCTIONS = "You are the help desk of a bicycle shop. Answer briefly and kindly. " * 6


def resources(urls: list[str]) -> list[Any]:
    """The Model over three replicas, priced with a cached-input price, and the Agent."""
    docs: list[dict[str, Any]] = [
        {
            "kind": "Model",
            "metadata": {"name": "desk-model"},
            "spec": {
                "provider": "openai", "base_url": urls[0], "replicas": urls[1:],
                "max_retries": 0, "affinity": {"load_factor": 1.25},
                "pricing": {"input_per_mtok": 2.5, "cached_input_per_mtok": 0.25,
                            "output_per_mtok": 10.0},
            },
        },
        {"kind": "Agent", "metadata": {"name": "desk"},
         "spec": {"model": "desk-model", "instructions": INSTRUCTIONS,
                  "loop": {"retry": {"max_attempts": 2}}}},
    ]  # fmt: skip
    return [parse_resource({"apiVersion": "agentrt.dev/v1", **doc}) for doc in docs]


async def turn(rt: Runtime, session: str, text: str, names: dict[str, str]) -> str:
    """One turn of ``session``; the replica its step went to, by server name."""
    result = await rt.run("desk", text, session=session)
    [step] = [
        e.data for e in await rt.store.read_events(result.run_id) if e.type == events.MODEL_RESULT
    ]
    return names[step["replica"]]


async def main(store: Path) -> None:
    """Take turns, stop a replica, take more, and show the hit rate."""
    servers = [ModelTestServer(SCRIPT, prefix_cache=True) for _ in range(3)]
    names = {await server.start(): f"replica-{i}" for i, server in enumerate(servers)}
    try:
        async with Runtime(store=store) as rt:
            await rt.apply(resources(list(names)))
            where = {s: await turn(rt, s, "my brakes squeak", names) for s in SESSIONS}
            for session in SESSIONS:
                again = await turn(rt, session, "and the chain skips", names)
                print(f"{session:<8} turns 1-2 on {where[session]} and {again}")
            stopped = where[SESSIONS[0]]
            await servers[list(names.values()).index(stopped)].stop()
            print(f"{stopped} stopped")
            for session in SESSIONS:
                moved = [await turn(rt, session, f"question {i}", names) for i in range(3)]
                print(f"{session:<8} turns 3-5 on {', '.join(moved)}")
            report = await cache_report(rt.store, namespace="default")
    finally:
        for server in servers:
            await server.stop()
    for kind, groups in (("agent", report.by_agent), ("model", report.by_model)):
        for name, hits in groups.items():
            print(
                f"{kind} {name}: {hits.cached_tokens} of {hits.prompt_tokens} prompt tokens "
                f"cached ({hits.hit_rate:.0%}) over {hits.steps} steps"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="the SQLite store to keep (default: a throwaway one)")
    args = parser.parse_args()
    if args.store:
        asyncio.run(main(Path(args.store)))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp) / "agentrt.db"))
