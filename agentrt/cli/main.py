"""The ``agentrt`` command.

Exit codes: 0 success; 1 the run ended other than ``succeeded``; 2 a usage
error (bad spec, flag, unknown run); 3 the run waits for a person; 4 the store
cannot be opened or written here (its path, permissions, read-only media, a
lock); 5 the file is not a store this agentrt can use (not one, damaged, another
schema version); 6 no space left for the store; 130 interrupted; 141 the output's
reader went away (``agentrt runs list | head``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from agentrt import _json
from agentrt._text import count, plural
from agentrt._version import __version__
from agentrt.cli import doctor, memory
from agentrt.cli.render import (
    LiveTrace,
    RunLog,
    Style,
    render_result,
    render_run_list,
    render_run_tree,
)
from agentrt.engine import RunResult, Runtime
from agentrt.engine import events as ev
from agentrt.errors import (
    AgentrtError,
    SpecError,
    StoreError,
    StoreFull,
    StoreInvalid,
    UsageError,
)
from agentrt.spec.loader import load_paths
from agentrt.spec.refs import check_references
from agentrt.spec.resources import KINDS, Budgets, Query, Team
from agentrt.spec.team import team_graph, to_dot, to_mermaid
from agentrt.state import open_store
from agentrt.state.base import RUN_STATUSES, WAITING_STATUSES, Event, RunRecord, Store

__all__ = ["CommandParser", "build_parser", "main"]

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_STORE_UNAVAILABLE, EXIT_STORE_INVALID, EXIT_STORE_FULL = 4, 5, 6
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: what a shell shows for a command whose reader left
_OUTPUT_CLOSED = "the output's reader is gone"


class CommandParser(argparse.ArgumentParser):
    """A parser whose commands, at every depth, take the global flags before or after them.

    ``add_subparsers`` builds each command's parser of its parent's class, so
    ``agentrt graph show X --json`` and ``agentrt memory list --store S`` work
    like ``agentrt --json graph show X``, with no command left out.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a command's parser sets a flag only when it is given there,
        # so it never resets one given before the command (the root sets defaults).
        self.add_argument(
            "--store",
            default=argparse.SUPPRESS,
            help="store URL or SQLite file (default: $AGENTRT_STORE or the user data dir)",
        )
        self.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``agentrt`` command."""
    p = CommandParser(prog="agentrt", description="Run AI agents as durable, governable workloads.")
    p.set_defaults(store=os.environ.get("AGENTRT_STORE"), json=False)
    p.add_argument("--version", action="version", version=f"agentrt {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run a multi-step agent offline and show its trace")
    d.add_argument("--input", help="the question to ask the demo agent")

    a = sub.add_parser("apply", help="validate and store resources")
    a.add_argument("-f", "--filename", action="append", required=True, help="file or directory")

    g = sub.add_parser("get", help="list stored resources")
    g.add_argument("kind", help=f"{', '.join(KINDS)} (case-insensitive, plural ok)")
    g.add_argument("name", nargs="?")
    g.add_argument("-n", "--namespace")

    gr = sub.add_parser("graph", help="draw a Team's graph")
    grsub = gr.add_subparsers(dest="graph_command", required=True, metavar="COMMAND")
    gs = grsub.add_parser("show", help="print a Team's graph as Mermaid (or DOT)")
    gs.add_argument("team", help="name of a Team")
    gs.add_argument("--dot", action="store_true", help="Graphviz DOT instead of Mermaid")
    gs.add_argument("-f", "--filename", action="append", help="read it from files, not the store")
    gs.add_argument("-n", "--namespace", default="default")

    r = sub.add_parser("run", help="run an agent and show its steps live")
    r.add_argument("agent")
    r.add_argument("input")
    r.add_argument("-n", "--namespace", default="default")
    r.add_argument("--session", help="continue (or start) a conversation")
    r.add_argument("--idempotency-key", help="submit at most once per key")
    r.add_argument("--max-tokens", type=int)
    r.add_argument("--max-tool-calls", type=int)
    r.add_argument("--max-cost", type=float, help="US dollars")
    r.add_argument("--deadline", type=float, help="seconds")
    r.add_argument("--concurrency", type=int, help="a Team: at most N nodes at once")
    r.add_argument("-q", "--quiet", action="store_true", help="print only the output")

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

    for name, text in (
        ("resume", "continue an interrupted run; recorded steps are not redone"),
        ("replay", "re-execute a finished run from its log, with no model or tool calls"),
        ("cancel", "cancel a run"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("run")

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

    rv = sub.add_parser("resolve", help="decide a step whose outcome is unknown after a crash")
    rv.add_argument("run")
    rv.add_argument("step", type=int)
    how = rv.add_mutually_exclusive_group(required=True)
    how.add_argument("--rerun", action="store_true", help="run the tool call again")
    how.add_argument("--output", help="it happened; this is what it returned")
    how.add_argument("--fail", metavar="REASON", help="report it to the model as failed")

    ap = sub.add_parser("approve", help="approve a tool call a run waits on")
    ap.add_argument("run")
    ap.add_argument("step", type=int)
    dn = sub.add_parser("deny", help="deny a tool call a run waits on (the model sees why)")
    dn.add_argument("run")
    dn.add_argument("step", type=int)
    dn.add_argument("--reason", required=True)

    gc = sub.add_parser("gc", help="delete finished runs older than the retention")
    gc.add_argument(
        "--older-than",
        default=os.environ.get("AGENTRT_RETENTION", "30d"),
        help="e.g. 90m, 12h, 30d (default: $AGENTRT_RETENTION or 30d)",
    )

    doctor.add_parser(sub)
    memory.add_parser(sub)

    w = sub.add_parser("worker", help="resume interrupted runs and execute queued ones")
    w.add_argument("--poll", type=float, default=1.0, help="seconds between queue polls")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentrt`` console script."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # Whoever read the output is gone (`agentrt runs list | head`): stop quietly,
        # as a command the shell sees end by SIGPIPE does; a run stays resumable.
        # Standard output goes to /dev/null so the interpreter's last flush cannot fail.
        _discard_stdout()
        return EXIT_OUTPUT_CLOSED


def _discard_stdout() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file descriptor (a caller's in-memory stream)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # `module:function` references in specs resolve from the working directory,
    # as `python -m` would (the console script's own directory is not useful).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    _log_in_one_line()
    try:
        return asyncio.run(_dispatch(args))
    except asyncio.CancelledError as exc:
        if _OUTPUT_CLOSED not in exc.args:
            raise
        raise BrokenPipeError from None  # the live trace's reader went away
    except KeyboardInterrupt:
        print("interrupted; the run stays resumable", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SpecError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _store_exit(exc)
    except AgentrtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


class _OneLine(logging.Formatter):
    """A runtime's log record as one line: a command prints no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return f"agentrt: {record.getMessage()}"


def _log_in_one_line() -> None:
    """Show the runtime's warnings on stderr, one line each, unless logging is set up."""
    logger = logging.getLogger("agentrt")
    if logging.getLogger().handlers or logger.handlers:
        return  # the embedding program (or a test) decides
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLine())
    logger.addHandler(handler)


def _store_exit(exc: StoreError) -> int:
    if isinstance(exc, StoreFull):
        return EXIT_STORE_FULL
    return EXIT_STORE_INVALID if isinstance(exc, StoreInvalid) else EXIT_STORE_UNAVAILABLE


async def _dispatch(args: argparse.Namespace) -> int:
    handler = _HANDLERS[args.command]
    return await handler(args)


# --- helpers --------------------------------------------------------------------


def _style() -> Style:
    return Style.for_stream(sys.stdout)


def _print_json(value: Any) -> None:
    print(_json.dumps_str(value))


def _exit_for(result: RunResult) -> int:
    if result.status == "succeeded":
        return EXIT_OK
    return EXIT_WAITING if result.status in WAITING_STATUSES else EXIT_RUN_FAILED


def _finish(args: argparse.Namespace, result: RunResult, *, quiet: bool = False) -> int:
    if args.json:
        _print_json(result.to_dict())
    elif quiet:
        print(result.output if result.output is not None else "")
    else:
        print(render_result(result, _style()))
    return _exit_for(result)


def _stop_command() -> Callable[[], None]:
    """A function that ends the running command because its output's reader is gone."""
    task = asyncio.current_task()

    def stop() -> None:
        if task is not None:
            task.cancel(_OUTPUT_CLOSED)  # main() exits quietly; the run stays resumable

    return stop


def _runtime(args: argparse.Namespace, *, live: bool = True, resume: bool = False) -> Runtime:
    observers = (
        [LiveTrace(style=_style(), on_closed=_stop_command())] if live and not args.json else []
    )
    scratch = os.environ.get("AGENTRT_SCRATCH")
    return Runtime(
        args.store,
        resume_interrupted=resume,
        observers=observers,
        lease_ttl_s=_lease_ttl(),
        scratch_root=Path(scratch) if scratch else None,
    )


def _lease_ttl() -> float:
    raw = os.environ.get("AGENTRT_LEASE_TTL", "30")
    try:
        ttl = float(raw)
    except ValueError:
        raise UsageError(f"AGENTRT_LEASE_TTL={raw!r}: give a number of seconds") from None
    if ttl <= 0:
        raise UsageError(f"AGENTRT_LEASE_TTL={raw!r}: must be more than 0")
    return ttl


def _run_to_dict(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "namespace": run.namespace,
        "agent": run.agent,
        "status": run.status,
        "reason": run.reason,
        "session": run.session_id,
        "turn": run.turn,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "parent_run": run.parent_run,
        "fork_step": run.fork_step,
        "usage": {
            "input_tokens": run.usage.input_tokens,
            "output_tokens": run.usage.output_tokens,
            "cost_usd": run.usage.cost_usd,
            "model_calls": run.usage.model_calls,
            "tool_calls": run.usage.tool_calls,
        },
    }


async def _with_store(args: argparse.Namespace, *, read_only: bool = False) -> Store:
    # Commands that only read open the store read-only: they work on read-only
    # media and never migrate it.
    return await open_store(args.store, read_only=read_only)


def _kind(raw: str) -> str:
    for kind in KINDS:
        if raw.lower() in (kind.lower(), plural(kind).lower()):
            return kind
    raise UsageError(f"unknown kind {raw!r}; use one of: {', '.join(KINDS)}")


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not match:
        raise UsageError(f"--older-than {text!r}: write a number and a unit, e.g. 90m, 12h, 30d")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


# --- commands -------------------------------------------------------------------


async def _cmd_demo(args: argparse.Namespace) -> int:
    from agentrt.cli.demo import DEFAULT_QUESTION, demo_resources_path

    style = _style()
    async with _runtime(args) as rt:
        await rt.apply(demo_resources_path())
        question = args.input or DEFAULT_QUESTION
        if not args.json:
            print(
                style.bold("agentrt demo")
                + style.dim(f"  store: {getattr(rt.store, 'path', rt.store)}")
            )
            print(f"question: {question}\n")
        run = await rt.submit("analyst", question, namespace="demo")
        result = await rt.wait(run.id)
        code = _finish(args, result)
        if not args.json:
            print()
            print(style.dim("see it again:   ") + f"agentrt runs show {run.id}")
            print(style.dim("replay offline: ") + f"agentrt replay {run.id}")
            print(style.dim("branch it:      ") + f"agentrt fork {run.id} --from-step 1")
        return code


async def _cmd_apply(args: argparse.Namespace) -> int:
    loaded = load_paths(args.filename)
    queries = [item.resource for item in loaded if isinstance(item.resource, Query)]
    async with _runtime(args, live=bool(queries)) as rt:
        records = await rt.apply(loaded)
        if not args.json:
            for r in records:
                where = f"(namespace {r.namespace})"
                print(f"{r.kind}/{r.name} {where} applied, generation {r.generation}")
        # A Query becomes a run; its idempotency key makes re-applying the file safe.
        results = []
        for query in queries:
            run = await rt.submit_query(query)
            results.append(await rt.wait(run.id))
    if args.json:
        _print_json(
            [
                {
                    "kind": r.kind,
                    "namespace": r.namespace,
                    "name": r.name,
                    "generation": r.generation,
                }
                for r in records
            ]
            + [{"kind": "Query", "run": result.to_dict()} for result in results]
        )
    else:
        for result in results:
            print(render_result(result, _style()))
    return max((_exit_for(result) for result in results), default=EXIT_OK)


async def _cmd_graph(args: argparse.Namespace) -> int:
    team = await _find_team(args)
    graph = team_graph(team)
    if args.json:
        _print_json({"team": team.name, "mermaid": to_mermaid(graph), "dot": to_dot(graph)})
    else:
        print(to_dot(graph) if args.dot else to_mermaid(graph))
    return EXIT_OK


async def _find_team(args: argparse.Namespace) -> Team:
    """The Team named on the command line, from ``-f`` files or else from the store."""
    if args.filename:
        loaded = load_paths(args.filename)
        check_references(loaded)
        teams = [item.resource for item in loaded if isinstance(item.resource, Team)]
    else:
        store = await _with_store(args, read_only=True)
        try:
            record = await store.get_resource("Team", args.namespace, args.team)
        finally:
            await store.close()
        teams = [Team.model_validate(record.body)] if record is not None else []
    for team in teams:
        if team.name == args.team and team.namespace == args.namespace:
            return team
    where = "in those files" if args.filename else "in the store (apply it first, or use -f)"
    raise UsageError(f"Team {args.team!r} not found in namespace {args.namespace!r} {where}")


async def _cmd_get(args: argparse.Namespace) -> int:
    kind = _kind(args.kind)
    store = await _with_store(args, read_only=True)
    try:
        records = await store.list_resources(kind, args.namespace)
    finally:
        await store.close()
    if args.name:
        records = [r for r in records if r.name == args.name]
        if not records:
            raise UsageError(f"{kind} {args.name!r} not found; list them with `agentrt get {kind}`")
    if args.json:
        _print_json([{**r.body, "generation": r.generation} for r in records])
        return EXIT_OK
    if args.name:
        import yaml

        for r in records:
            print(
                yaml.safe_dump({**r.body, "status": {"generation": r.generation}}, sort_keys=False)
            )
        return EXIT_OK
    print(f"{'NAMESPACE':<16}{'NAME':<28}{'GENERATION':<12}UPDATED")
    for r in records:
        updated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.updated_at))
        print(f"{r.namespace:<16}{r.name:<28}{r.generation:<12}{updated}")
    return EXIT_OK


async def _cmd_run(args: argparse.Namespace) -> int:
    budgets = Budgets(
        max_tokens=args.max_tokens,
        max_tool_calls=args.max_tool_calls,
        max_cost_usd=args.max_cost,
        deadline_s=args.deadline,
    )
    async with _runtime(args, live=not args.quiet) as rt:
        run = await rt.submit(
            args.agent,
            args.input,
            namespace=args.namespace,
            session=args.session,
            idempotency_key=args.idempotency_key,
            budgets=budgets,
            concurrency=args.concurrency,
        )
        result = await rt.wait(run.id)
    return _finish(args, result, quiet=args.quiet)


async def _cmd_runs(args: argparse.Namespace) -> int:
    if args.runs_command in ("export", "import"):
        return await _cmd_runs_transfer(args)
    store = await _with_store(args, read_only=True)
    try:
        if args.runs_command == "list":
            runs = await store.list_runs(
                namespace=args.namespace,
                session_id=args.session,
                statuses=args.status,
                limit=args.limit,
            )
            if args.json:
                _print_json([_run_to_dict(r) for r in runs])
            else:
                print(render_run_list(runs, _style()))
            return EXIT_OK
        run = await store.get_run(args.run)
        if run is None:
            raise UsageError(f"run {args.run!r} not found; list runs with `agentrt runs list`")
        events = await store.read_events(run.id)
        children = {} if args.json else await _child_logs(store, events)
    finally:
        await store.close()
    if args.json:
        _print_json(
            {
                "run": _run_to_dict(run),
                "events": [
                    {"seq": e.seq, "type": e.type, "step": e.step, "ts": e.ts, "data": e.data}
                    for e in events
                ],
            }
        )
    else:
        print(render_run_tree(run, events, _style(), children))
    return EXIT_OK


async def _child_logs(store: Store, events: list[Event]) -> dict[str, RunLog]:
    """The child runs of a team run's nodes (and theirs, for nested teams), by id."""
    found: dict[str, RunLog] = {}
    for event in events:
        child_id = event.data.get("child_run") if event.type == ev.NODE_FINISHED else None
        if not child_id or child_id in found:
            continue
        child = await store.get_run(child_id)
        if child is None:  # collected by gc
            continue
        child_events = await store.read_events(child_id)
        found[child_id] = (child, child_events)
        found.update(await _child_logs(store, child_events))
    return found


async def _cmd_runs_transfer(args: argparse.Namespace) -> int:
    if args.runs_command == "export":
        store = await _with_store(args, read_only=True)
        try:
            async with Runtime(store, resume_interrupted=False) as reader:
                text = _json.dumps_str(await reader.export_run(args.run))
        finally:
            await store.close()
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
    async with _runtime(args, live=False) as rt:
        try:
            data = _json.loads(await asyncio.to_thread(Path(args.file).read_bytes))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {args.file}: {exc}") from None
        run = await rt.import_run(data)
    if args.json:
        _print_json(_run_to_dict(run))
    else:
        print(f"imported as {run.id} ({run.status}); replay it with `agentrt replay {run.id}`")
    return EXIT_OK


async def _cmd_resume(args: argparse.Namespace) -> int:
    async with _runtime(args) as rt:
        result = await rt.resume(args.run)
    return _finish(args, result)


async def _cmd_replay(args: argparse.Namespace) -> int:
    async with _runtime(args, live=False) as rt:
        result = await rt.replay(args.run)
    return _finish(args, result)


async def _cmd_cancel(args: argparse.Namespace) -> int:
    async with _runtime(args, live=False) as rt:
        # The owner of a run executing elsewhere notices within a second.
        run = await rt.cancel(args.run, wait_s=5.0)
    if args.json:
        _print_json(_run_to_dict(run))
    elif run.status == "cancelled":
        print(f"{run.id} cancelled")
    elif run.finished:
        print(f"{run.id} already {run.status}")
    else:
        print(f"{run.id}: cancellation requested; its worker ({run.lease_owner}) will stop it")
    return EXIT_OK


async def _cmd_fork(args: argparse.Namespace) -> int:
    overrides: dict[str, str] = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or field not in ("instructions",):
            raise UsageError(f"--set {item!r}: supported is `--set instructions=TEXT`")
        overrides[field] = value
    async with _runtime(args) as rt:
        run = await rt.fork(
            args.run,
            from_step=args.from_step,
            model=args.model,
            instructions=overrides.get("instructions"),
        )
        if not args.json:
            print(f"{run.id} forked from {args.run} at step {args.from_step}")
        result = await rt.wait(run.id)
    return _finish(args, result)


async def _cmd_resolve(args: argparse.Namespace) -> int:
    action: Literal["rerun", "output", "fail"] = (
        "rerun" if args.rerun else ("output" if args.output is not None else "fail")
    )
    output = args.output if args.output is not None else (args.fail or "")
    async with _runtime(args) as rt:
        result = await rt.resolve(
            args.run, args.step, action, output=output, by=os.environ.get("USER")
        )
    return _finish(args, result)


async def _cmd_approve(args: argparse.Namespace) -> int:
    approved = args.command == "approve"
    async with _runtime(args) as rt:
        result = await rt.approve(
            args.run,
            args.step,
            approved=approved,
            reason=None if approved else args.reason,
            by=os.environ.get("USER"),
        )
    return _finish(args, result)


async def _cmd_gc(args: argparse.Namespace) -> int:
    cutoff = time.time() - _duration(args.older_than)
    async with _runtime(args, live=False) as rt:
        removed = await rt.gc(finished_before=cutoff)
    if args.json:
        _print_json(
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


async def _cmd_worker(args: argparse.Namespace) -> int:
    async with _runtime(args, resume=True) as rt:
        print(f"worker {rt.owner} serving; Ctrl-C to stop", file=sys.stderr)
        while True:
            await asyncio.sleep(args.poll)
            await rt.resume_interrupted()


_HANDLERS = {
    "demo": _cmd_demo,
    "apply": _cmd_apply,
    "get": _cmd_get,
    "graph": _cmd_graph,
    "run": _cmd_run,
    "runs": _cmd_runs,
    "resume": _cmd_resume,
    "replay": _cmd_replay,
    "cancel": _cmd_cancel,
    "fork": _cmd_fork,
    "resolve": _cmd_resolve,
    "approve": _cmd_approve,
    "deny": _cmd_approve,
    "gc": _cmd_gc,
    "worker": _cmd_worker,
    "doctor": doctor.run,
    "memory": memory.run,
}

if __name__ == "__main__":
    sys.exit(main())
