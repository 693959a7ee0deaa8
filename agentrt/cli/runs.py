"""Commands about runs: start one (``run``, ``demo``), steer it (``resume``, ``replay``,
``cancel``, ``fork``), look at the store's runs (``runs list|show|export|import``),
collect old ones (``gc``)."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

from agentrt import _json
from agentrt._text import count
from agentrt.cli._shared import (
    EXIT_OK,
    added_budget,
    finish,
    print_json,
    runtime,
    settings_of,
    style,
    with_store,
)
from agentrt.cli.render import render_run_list, render_run_tree
from agentrt.engine import QueuePlace, Runtime, places_of, read_run, run_summary
from agentrt.errors import UsageError
from agentrt.spec.resources import DOUBLE_TEXTING, Budgets
from agentrt.state.base import RUN_STATUSES, RunRecord

__all__ = ["add_demo_parser", "add_parsers", "fork_instructions", "show_cancel", "write_archive"]


def add_demo_parser(sub: Any) -> None:
    """Add ``demo`` to ``sub`` (from ``add_subparsers``)."""
    d = sub.add_parser("demo", help="run a multi-step agent offline and show its trace")
    d.add_argument("--input", help="the question to ask the demo agent")
    d.set_defaults(handler=_cmd_demo)


def add_parsers(sub: Any) -> None:
    """Add the commands that start, steer, list and collect runs to ``sub``."""
    _add_run_parser(sub)
    _add_runs_parser(sub)
    for name, text, handler in (
        ("resume", "continue an interrupted run; recorded steps are not redone", _cmd_resume),
        (
            "replay",
            "re-execute a finished run from its log, with no model or tool calls",
            _cmd_replay,
        ),
        ("cancel", "cancel a run", _cmd_cancel),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("run")
        sp.set_defaults(handler=handler)
        if name == "resume":
            sp.add_argument(
                "--add-budget",
                metavar="LIMITS",
                help="raise a run stopped budget_exhausted and go on from the step it could "
                "not afford: tokens=N,cost=USD,tool_calls=N,deadline=S (any of them)",
            )

    f = sub.add_parser("fork", help="start a new run sharing steps 1..N of another")
    f.add_argument("run")
    f.add_argument("--from-step", type=int, required=True)
    f.add_argument("--model", help="use this Model after the fork point")
    f.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a field; supported: instructions",
    )
    f.set_defaults(handler=_cmd_fork)

    gc = sub.add_parser("gc", help="delete finished runs older than the retention")
    gc.add_argument(
        "--older-than",
        default=None,
        help="e.g. 90m, 12h, 30d (default: $AGENTRT_RETENTION or 30d)",
    )
    gc.set_defaults(handler=_cmd_gc)


def _add_run_parser(sub: Any) -> None:
    r = sub.add_parser("run", help="run an agent and show its steps live")
    r.add_argument("agent")
    r.add_argument("input")
    r.add_argument("-n", "--namespace", default="default")
    r.add_argument("--session", help="continue (or start) a conversation")
    r.add_argument(
        "--double-texting",
        choices=DOUBLE_TEXTING,
        help="when the session has an unfinished turn: reject, enqueue (run after it), "
        "interrupt (cancel it, keep its record), rollback (cancel it, drop it); "
        "default: the agent's session.double_texting",
    )
    r.add_argument("--idempotency-key", help="submit at most once per key")
    r.add_argument(
        "--tag",
        action="append",
        default=[],
        dest="tags",
        help="a tag of the query, which the agent's routing.rules may route by (repeatable)",
    )
    r.add_argument(
        "--priority",
        choices=("low", "normal", "high"),
        help="its class in its tenant's queue (default: the agent's priority)",
    )
    r.add_argument("--max-tokens", type=int)
    r.add_argument("--max-tool-calls", type=int)
    r.add_argument("--max-cost", type=float, help="US dollars")
    r.add_argument("--deadline", type=float, help="seconds")
    r.add_argument("--concurrency", type=int, help="a Team: at most N nodes at once")
    r.add_argument("-q", "--quiet", action="store_true", help="print only the output")
    r.add_argument(
        "--queue",
        action="store_true",
        help="only queue it for a worker (`agentrt worker`): print the run's id and return",
    )
    r.set_defaults(handler=_cmd_run)


def _add_runs_parser(sub: Any) -> None:
    runs = sub.add_parser("runs", help="list and inspect runs")
    rsub = runs.add_subparsers(dest="runs_command", required=True, metavar="SUBCOMMAND")
    rl = rsub.add_parser("list", help="recent runs")
    rl.add_argument("-n", "--namespace")
    rl.add_argument(
        "--status",
        action="append",
        choices=RUN_STATUSES,
        metavar="STATUS",
        help=f"only runs in this status (repeatable): {', '.join(RUN_STATUSES)}",
    )
    rl.add_argument("--session")
    rl.add_argument("--limit", type=int, default=20)
    rs = rsub.add_parser("show", help="a run's steps as a tree")
    rs.add_argument("run")
    rx = rsub.add_parser("export", help="write a run's whole log as JSON")
    rx.add_argument("run")
    rx.add_argument("-o", "--output", help="file (default: standard output)")
    ri = rsub.add_parser("import", help="store an exported log as a new run (to replay it)")
    ri.add_argument("file")
    runs.set_defaults(handler=_cmd_runs)


async def _cmd_demo(args: argparse.Namespace) -> int:
    from agentrt.cli.demo import DEFAULT_QUESTION, demo_resources_path

    look = style(args)
    async with runtime(args) as rt:
        await rt.apply(demo_resources_path(), by=settings_of(args).user)
        question = args.input or DEFAULT_QUESTION
        if not args.json:
            print(
                look.bold("agentrt demo")
                + look.dim(f"  store: {getattr(rt.store, 'path', rt.store)}")
            )
            print(f"question: {question}\n")
        run = await rt.submit("analyst", question, namespace="demo")
        result = await rt.wait(run.id)
        code = finish(args, result)
        if not args.json:
            print()
            print(look.dim("see it again:   ") + f"agentrt runs show {run.id}")
            print(look.dim("replay offline: ") + f"agentrt replay {run.id}")
            print(look.dim("branch it:      ") + f"agentrt fork {run.id} --from-step 1")
        return code


async def _cmd_run(args: argparse.Namespace) -> int:
    budgets = Budgets(
        max_tokens=args.max_tokens,
        max_tool_calls=args.max_tool_calls,
        max_cost_usd=args.max_cost,
        deadline_s=args.deadline,
    )
    async with runtime(args, live=not (args.quiet or args.queue)) as rt:
        run = await rt.submit(
            args.agent,
            args.input,
            namespace=args.namespace,
            session=args.session,
            idempotency_key=args.idempotency_key,
            budgets=budgets,
            concurrency=args.concurrency,
            start=not args.queue,
            double_texting=args.double_texting,
            tags=args.tags,
            priority=args.priority,
        )
        if args.queue:
            if args.json:
                print_json(run_summary(run))
            else:
                print(run.id)
            return EXIT_OK
        if run.status == "queued" and not args.quiet:
            await _say_held_back(rt, run)
        result = await rt.wait(run.id)
    return finish(args, result, quiet=args.quiet)


async def _say_held_back(rt: Runtime, run: RunRecord) -> None:
    """Tell the person waiting why their run has not started (a limit of runs at once)."""
    place = (await rt.queue_places([run])).get(run.id)
    why = "it waits in the queue" if place is None else f"it waits: {place.reason}"
    print(
        f"{run.id} is queued; {why}. It starts here when there is room.",
        file=sys.stderr,
        flush=True,
    )


def _with_place(summary: dict[str, Any], place: QueuePlace | None) -> dict[str, Any]:
    if place is not None:
        summary["queue"] = place.to_dict()
    return summary


async def _cmd_runs(args: argparse.Namespace) -> int:
    if args.runs_command in ("export", "import"):
        return await _cmd_runs_transfer(args)
    store = await with_store(args, read_only=True)
    try:
        if args.runs_command == "list":
            runs = await store.list_runs(
                namespace=args.namespace,
                session_id=args.session,
                statuses=args.status,
                limit=args.limit,
            )
            places = await places_of(store, runs, now=time.time())
            if args.json:
                print_json([_with_place(run_summary(r), places.get(r.id)) for r in runs])
            else:
                waits = {run_id: place.line() for run_id, place in places.items()}
                print(render_run_list(runs, style(args), waits))
            return EXIT_OK
        view = await read_run(store, args.run, children=True)
        place = (await places_of(store, [view.run], now=time.time())).get(view.run.id)
    finally:
        await store.close()
    if args.json:
        data = view.to_dict()
        _with_place(data["run"], place)
        print_json(data)
    else:
        children = {i: (v.run, list(v.events)) for i, v in view.descendants().items()}
        print(render_run_tree(view.run, list(view.events), style(args), children))
        if place is not None:
            print(f"queue {place.line()}")
    return EXIT_OK


async def _cmd_runs_transfer(args: argparse.Namespace) -> int:
    if args.runs_command == "export":
        store = await with_store(args, read_only=True)
        try:
            async with Runtime(store, resume_interrupted=False) as reader:
                archive = await reader.export_run(args.run)
        finally:
            await store.close()
        return await write_archive(args, archive)
    async with runtime(args, live=False) as rt:
        try:
            data = _json.loads(await asyncio.to_thread(Path(args.file).read_bytes))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {args.file}: {exc}") from None
        run = await rt.import_run(data)
    if args.json:
        print_json(run_summary(run))
    else:
        print(f"imported as {run.id} ({run.status}); replay it with `agentrt replay {run.id}`")
    return EXIT_OK


async def _cmd_resume(args: argparse.Namespace) -> int:
    async with runtime(args) as rt:
        started = await rt.resume(
            args.run, by=settings_of(args).user, add_budget=added_budget(args.add_budget),
            wait=False,
        )  # fmt: skip
        if started.status == "queued" and (run := await rt.store.get_run(args.run)):
            await _say_held_back(rt, run)  # it never started, and a limit holds it back
        result = await rt.wait(args.run)
    return finish(args, result)


async def _cmd_replay(args: argparse.Namespace) -> int:
    async with runtime(args, live=False) as rt:
        result = await rt.replay(args.run)
    return finish(args, result)


async def write_archive(args: argparse.Namespace, archive: dict[str, Any]) -> int:
    """Write an exported run to ``-o`` (or standard output), as ``runs export`` does."""
    text = _json.dumps_str(archive)
    if args.output:
        try:
            await asyncio.to_thread(Path(args.output).write_text, text + "\n")
        except OSError as exc:
            raise UsageError(
                f"cannot write {args.output}: {exc.strerror or exc}; choose another -o file"
            ) from None
    else:
        print(text)
    return EXIT_OK


async def _cmd_cancel(args: argparse.Namespace) -> int:
    async with runtime(args, live=False) as rt:
        # The owner of a run executing elsewhere notices within a second.
        run = await rt.cancel(args.run, wait_s=5.0, by=settings_of(args).user)
    return show_cancel(args, run)


def show_cancel(args: argparse.Namespace, run: RunRecord) -> int:
    """What ``cancel`` prints of the run once asked: cancelled, already ended, or stopping."""
    if args.json:
        print_json(run_summary(run))
    elif run.status == "cancelled":
        print(f"{run.id} cancelled")
    elif run.finished:
        print(f"{run.id} already {run.status}")
    else:
        print(f"{run.id}: cancellation requested; its worker ({run.lease_owner}) will stop it")
    return EXIT_OK


def fork_instructions(args: argparse.Namespace) -> str | None:
    """The instructions ``fork --set instructions=TEXT`` gives (the one field it takes)."""
    overrides: dict[str, str] = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or field not in ("instructions",):
            raise UsageError(f"--set {item!r}: supported is `--set instructions=TEXT`")
        overrides[field] = value
    return overrides.get("instructions")


async def _cmd_fork(args: argparse.Namespace) -> int:
    instructions = fork_instructions(args)
    async with runtime(args) as rt:
        run = await rt.fork(
            args.run, from_step=args.from_step, model=args.model, instructions=instructions
        )
        if not args.json:
            print(f"{run.id} forked from {args.run} at step {args.from_step}")
        result = await rt.wait(run.id)
    return finish(args, result)


async def _cmd_gc(args: argparse.Namespace) -> int:
    cutoff = time.time() - _duration(args.older_than or settings_of(args).retention)
    async with runtime(args, live=False) as rt:
        removed = await rt.gc(finished_before=cutoff)
    if args.json:
        print_json(
            {
                "runs": removed.runs,
                "events": removed.events,
                "blobs": removed.blobs,
                "sessions": removed.sessions,
            }
        )
    else:
        print(
            f"removed {count(removed.runs, 'run')}, {count(removed.events, 'event')}, "
            f"{count(removed.blobs, 'blob')}, {count(removed.sessions, 'session')}"
        )
    return EXIT_OK


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not match:
        raise UsageError(f"--older-than {text!r}: write a number and a unit, e.g. 90m, 12h, 30d")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
