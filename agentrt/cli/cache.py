"""``agentrt cache``: the share of prompt tokens the providers' prefix caches served,
per Agent and per Model, over a tenant's newest runs (see
:mod:`agentrt.engine.cache_hits`)."""

from __future__ import annotations

import argparse
from typing import Any

from agentrt.cli._shared import EXIT_OK, print_json, with_store
from agentrt.engine import CacheHits, cache_report

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``agentrt cache`` to the command line's subcommands."""
    c = sub.add_parser(
        "cache", help="prefix-cache hit rate of the model steps, per agent and per model"
    )
    c.add_argument("-n", "--namespace", default="default", help="the tenant (default)")
    c.add_argument("--agent", help="only the runs of this Agent")
    c.add_argument("--limit", type=int, default=1000, help="newest runs read (default 1000)")
    c.set_defaults(handler=_cmd_cache)


def _as_dict(hits: CacheHits) -> dict[str, Any]:
    return {
        "steps": hits.steps,
        "prompt_tokens": hits.prompt_tokens,
        "cached_tokens": hits.cached_tokens,
        "hit_rate": round(hits.hit_rate, 4),
    }


async def _cmd_cache(args: argparse.Namespace) -> int:
    store = await with_store(args, read_only=True)
    try:
        report = await cache_report(
            store, namespace=args.namespace, agent=args.agent, limit=args.limit
        )
    finally:
        await store.close()
    if args.json:
        print_json(
            {
                "runs": report.runs,
                "agents": {k: _as_dict(v) for k, v in sorted(report.by_agent.items())},
                "models": {k: _as_dict(v) for k, v in sorted(report.by_model.items())},
            }
        )
        return EXIT_OK
    if not report.by_model:
        print(f"no model step in the newest runs of namespace {args.namespace!r}")
        return EXIT_OK
    print(f"{'':<6} {'NAME':<24} {'STEPS':>7} {'PROMPT':>10} {'CACHED':>10} {'HIT RATE':>9}")
    for kind, groups in (("agent", report.by_agent), ("model", report.by_model)):
        for name, hits in sorted(groups.items()):
            print(
                f"{kind:<6} {name[:24]:<24} {hits.steps:>7} {hits.prompt_tokens:>10} "
                f"{hits.cached_tokens:>10} {hits.hit_rate:>9.1%}"
            )
    return EXIT_OK
