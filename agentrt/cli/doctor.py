"""``agentrt doctor``: which sandbox backends work on this machine, and which ``auto`` picks."""

from __future__ import annotations

import argparse
from typing import Any

from agentrt import _json
from agentrt.cli._shared import settings_of
from agentrt.errors import UsageError
from agentrt.tools.sandbox.sandboxes import Sandboxes
from agentrt.tools.sandbox.selection import choose_backend

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add the ``doctor`` command to ``subparsers`` (from ``add_subparsers``)."""
    parser = subparsers.add_parser(
        "doctor", help="check which sandboxes for model-written code work here"
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Probe every backend, print the results; exit 1 when no isolating backend works."""
    sandboxes = Sandboxes(settings_of(args).sandbox_dir)
    workdir = sandboxes.workdir
    try:
        results = await sandboxes.probe_all()
        try:
            # Chosen from the probes, without reaping anything: doctor only looks.
            chosen = await choose_backend(
                "auto",
                allow_unsafe=False,
                policy_needs_network_allowlist=False,
                probe=sandboxes.probe,
            )
            auto: str | None = chosen.name
        except UsageError:
            auto = None
    finally:
        await sandboxes.close()
    if args.json:
        print(
            _json.dumps_str(
                {
                    "backends": [
                        {"backend": r.backend, "ok": r.ok, "detail": r.detail} for r in results
                    ],
                    "auto": auto,
                    "workdir": str(workdir),
                }
            )
        )
    else:
        width = max(len(r.backend) for r in results)
        for r in results:
            print(f"{r.backend:<{width}}  {'ok ' if r.ok else 'no '}  {r.detail}")
        print(
            f"auto picks: {auto}"
            if auto
            else "auto picks: nothing that isolates; model-written code needs "
            "`allow_unsafe: true` to run with the process backend"
        )
    return 0 if auto else 1
