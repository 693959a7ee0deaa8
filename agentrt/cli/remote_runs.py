"""The run actions against a server: ``cancel``, ``resume``, ``fork``, ``approve``,
``deny``, ``resolve`` and ``runs export``, through the API's ``/v1/runs/{id}/...``.

Each prints what the command prints over a store, with the same printers: an
action that continues a run (a resume, a decision) or starts one (a fork) draws
it live from its events until it ends or waits again, as the local command's
trace does, then its result. The server records the key's principal as who
asked; its refusals (a role too low, a run the key may not see, a state the
action does not apply to) are one line, exit code 2.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Literal

from agentrt.cli._shared import added_budget, finish
from agentrt.cli.remote_follow import Handler, follow, live_trace, record_of, view_of
from agentrt.cli.runs import fork_instructions, show_cancel, write_archive
from agentrt.client import AgentrtClient, ApiError, RunDetail, Submission
from agentrt.engine import events as ev
from agentrt.state.base import WAITING_STATUSES

__all__ = ["HANDLERS"]


async def _cmd_cancel(args: argparse.Namespace, client: AgentrtClient) -> int:
    try:
        run = await client.cancel_run(args.run)
    except ApiError as exc:
        if exc.status != 409:
            raise
        # A run that had ended is reported as it ended, as the command over a store does.
        ended = (await client.get_run(args.run)).run
        if not ended.finished:
            raise
        run = ended
    return show_cancel(args, record_of(run))


async def _cmd_resume(args: argparse.Namespace, client: AgentrtClient) -> int:
    before = await client.get_run(args.run)
    added = added_budget(args.add_budget)
    limits = None if added is None else asdict(added)
    return await _continued(
        args, client, before, await client.resume_run(args.run, add_budget=limits)
    )


async def _cmd_decide(args: argparse.Namespace, client: AgentrtClient) -> int:
    """``approve`` and ``deny`` (which one: the command's name)."""
    before = await client.get_run(args.run)
    if args.command == "approve":
        answer = await client.approve(args.run, args.step)
    else:
        answer = await client.deny(args.run, args.step, args.reason)
    return await _continued(args, client, before, answer)


async def _cmd_resolve(args: argparse.Namespace, client: AgentrtClient) -> int:
    action: Literal["rerun", "output", "fail"] = (
        "rerun" if args.rerun else ("output" if args.output is not None else "fail")
    )
    before = await client.get_run(args.run)
    answer = await client.resolve(args.run, args.step, action, output=args.output, reason=args.fail)
    return await _continued(args, client, before, answer)


async def _continued(
    args: argparse.Namespace, client: AgentrtClient, before: RunDetail, answer: Submission
) -> int:
    """Draw the run a request continued from where it was ``before``; print its result.

    An approval that leaves other calls waiting does not continue the run: it
    still waits, with no new execution (``run.started``) in its log, and is
    reported as it is, as the command over a store reports it.
    """
    run_id = before.run.id
    if answer.run.status in WAITING_STATUSES:
        now = await client.get_run(run_id)
        later = [e for e in now.events if e.seq > before.last_seq]
        if not any(e.type == ev.RUN_STARTED for e in later):
            return finish(args, view_of(now).result())
    return finish(args, await follow(client, run_id, live_trace(args), since=before))


async def _cmd_fork(args: argparse.Namespace, client: AgentrtClient) -> int:
    forked = await client.fork_run(
        args.run, args.from_step, model=args.model, instructions=fork_instructions(args)
    )
    if not args.json:
        print(f"{forked.run.id} forked from {args.run} at step {args.from_step}")
    return finish(args, await follow(client, forked.run.id, live_trace(args)))


async def _cmd_runs_export(args: argparse.Namespace, client: AgentrtClient) -> int:
    return await write_archive(args, (await client.export_run(args.run)).to_dict())


HANDLERS: dict[str, Handler] = {
    "cancel": _cmd_cancel,
    "resume": _cmd_resume,
    "fork": _cmd_fork,
    "approve": _cmd_decide,
    "deny": _cmd_decide,
    "resolve": _cmd_resolve,
    "runs export": _cmd_runs_export,
}
"""The remote form of each run action, by its command's name."""
