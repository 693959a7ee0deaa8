"""A person's decisions: ``approve`` or ``deny`` a call, ``resolve`` an unknown step."""

from __future__ import annotations

import argparse
from typing import Any, Literal

from agentrt.cli._shared import finish, runtime, settings_of

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    """Add ``resolve``, ``approve`` and ``deny`` to ``sub`` (from ``add_subparsers``)."""
    rv = sub.add_parser("resolve", help="decide a step whose outcome is unknown after a crash")
    rv.add_argument("run")
    rv.add_argument("step", type=int)
    how = rv.add_mutually_exclusive_group(required=True)
    how.add_argument("--rerun", action="store_true", help="run the tool call again")
    how.add_argument("--output", help="it happened; this is what it returned")
    how.add_argument("--fail", metavar="REASON", help="report it to the model as failed")
    rv.set_defaults(handler=_cmd_resolve)

    ap = sub.add_parser("approve", help="approve a tool call a run waits on")
    ap.add_argument("run")
    ap.add_argument("step", type=int)
    ap.set_defaults(handler=_cmd_approve)
    dn = sub.add_parser("deny", help="deny a tool call a run waits on (the model sees why)")
    dn.add_argument("run")
    dn.add_argument("step", type=int)
    dn.add_argument("--reason", required=True)
    dn.set_defaults(handler=_cmd_approve)


async def _cmd_resolve(args: argparse.Namespace) -> int:
    action: Literal["rerun", "output", "fail"] = (
        "rerun" if args.rerun else ("output" if args.output is not None else "fail")
    )
    output = args.output if args.output is not None else (args.fail or "")
    async with runtime(args) as rt:
        result = await rt.resolve(
            args.run, args.step, action, output=output, by=settings_of(args).user
        )
    return finish(args, result)


async def _cmd_approve(args: argparse.Namespace) -> int:
    approved = args.command == "approve"
    async with runtime(args) as rt:
        result = await rt.approve(
            args.run,
            args.step,
            approved=approved,
            reason=None if approved else args.reason,
            by=settings_of(args).user,
        )
    return finish(args, result)
