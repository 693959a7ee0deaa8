"""The ``agentrt`` command against a server (``--server URL`` / ``AGENTRT_SERVER``).

The commands that work remotely (``apply``, ``get``, ``run``, ``runs list``,
``runs show``) go through :class:`agentrt.client.AgentrtClient` instead of
opening a store, and print what they print locally: the server's records are
turned back into the runtime's own (runs, events, results) and drawn by the
same renderers, ``agentrt run``'s live trace from the run's server-sent
events. The key (``AGENTRT_API_KEY``) decides the namespace: its tenant. Any
other command says in one line that it does not work against a server yet.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from agentrt._proxy import proxy_for
from agentrt.cli._shared import (
    EXIT_OK,
    EXIT_STORE_UNAVAILABLE,
    EXIT_USAGE,
    exit_for,
    finish,
    print_json,
    settings_of,
    stop_command,
    style,
)
from agentrt.cli.render import LiveTrace, render_result, render_run_list, render_run_tree
from agentrt.cli.resources import kind_of
from agentrt.client import AgentrtClient, ApiError, ModelDelta, RunDetail, RunEvent
from agentrt.client import Run as RemoteRun
from agentrt.engine import RunResult, RunView, run_summary
from agentrt.engine import events as ev
from agentrt.errors import UsageError
from agentrt.spec._yaml import parse_documents, read_file
from agentrt.spec.loader import iter_resource_files, load_paths
from agentrt.spec.resources import Query
from agentrt.state.base import WAITING_STATUSES, Event, RunRecord, RunStatus, Usage

__all__ = ["handler_for"]

Handler = Callable[[argparse.Namespace, AgentrtClient], Awaitable[int]]


def handler_for(args: argparse.Namespace) -> Callable[[argparse.Namespace], Awaitable[int]]:
    """The remote form of the parsed command; a :class:`UsageError` for one it has not."""
    command = args.command
    if command == "runs":
        command = f"runs {args.runs_command}"
    handler = _HANDLERS.get(command)
    if handler is None:
        raise UsageError(
            f"`agentrt {command}` does not work against a server yet; run it where the "
            "store is (without --server and AGENTRT_SERVER)"
        )
    if not settings_of(args).api_key:
        raise UsageError("set AGENTRT_API_KEY to a key of the server (`agentrt keys create` there)")
    return lambda a: _with_client(a, handler)


async def _with_client(args: argparse.Namespace, handler: Handler) -> int:
    settings = settings_of(args)
    proxy = proxy_for(args.server, settings.environ)
    async with AgentrtClient(args.server, settings.api_key, proxy=proxy) as client:
        try:
            return await handler(args, client)
        except ApiError as exc:
            return _refused(exc)


def _refused(exc: ApiError) -> int:
    """Say why the server refused (as the local command says it), and the exit code."""
    spec_issues = [i for i in exc.issues if "document" in i]
    if spec_issues:
        for issue in spec_issues:
            field = f": field {issue['field']}" if issue.get("field") else ""
            print(
                f"{issue['document']}: {issue['resource']}{field}\n  error: {issue['message']}\n"
                f"  fix:   {issue['fix']}",
                file=sys.stderr,
            )
        return EXIT_USAGE
    if exc.status == 401:
        print(f"error: the server refused the key (AGENTRT_API_KEY): {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"error: {exc}", file=sys.stderr)
    # The server is where the store is: one that does not answer is a store out of reach.
    return EXIT_STORE_UNAVAILABLE if exc.status in (0, 502, 503, 504) else EXIT_USAGE


# -- the runtime's own records, from the API's


def record_of(run: RemoteRun, updated_at: float | None = None) -> RunRecord:
    """The :class:`RunRecord` a renderer draws, of a run the server sent."""
    u = run.usage
    return RunRecord(
        id=run.id, namespace=run.namespace, agent=run.agent, status=cast(RunStatus, run.status),
        created_at=run.created_at, updated_at=updated_at or run.finished_at or run.created_at,
        session_id=run.session, turn=run.turn, reason=run.reason, finished_at=run.finished_at,
        parent_run=run.parent_run, fork_step=run.fork_step, lease_owner=run.lease_owner,
        lease_expires=run.lease_expires, principal=run.principal,
        cancel_requested=run.cancel_requested, cancel_by=run.cancel_by,
        cancel_cause=run.cancel_cause,
        usage=Usage(u.input_tokens, u.output_tokens, u.cost_usd, u.model_calls, u.tool_calls),
    )  # fmt: skip


def event_of(event: RunEvent) -> Event:
    """The log's :class:`Event` of one the server sent."""
    return Event(event.seq, event.type, event.data, event.ts, event.step)


def view_of(detail: RunDetail, children: tuple[RunView, ...] = ()) -> RunView:
    """The read model the local commands show, of one the server sent."""
    events = [event_of(e) for e in detail.events]
    # The row's last change is not sent; its last event is when it last changed.
    updated = max([detail.run.created_at, *(e.ts for e in events)])
    return RunView.of(record_of(detail.run, updated), events, children)


async def _read_run(client: AgentrtClient, run_id: str) -> RunView:
    """A run and its child runs, theirs too, as ``read_run(children=True)`` reads them."""
    detail = await client.get_run(run_id)
    kids = []
    for child_id in detail.children:
        child = await _read_run(client, child_id)
        if child.run.fork_step is None:  # a fork names its origin as parent; not a child
            kids.append(child)
    kids.sort(key=lambda v: v.run.created_at)
    return view_of(detail, tuple(kids))


async def _result(client: AgentrtClient, run_id: str) -> RunResult:
    return view_of(await client.get_run(run_id)).result()


# -- following a run


def _child_of(event: RunEvent) -> str | None:
    """The child run whose end ``event`` records (an agent tool's call, a team node's)."""
    if event.type == ev.TOOL_RESULT:
        child = (event.data.get("trace") or {}).get("child_run")
    elif event.type == ev.NODE_FINISHED:
        child = event.data.get("child_run")
    else:
        return None
    return child if isinstance(child, str) else None


async def _show_child(client: AgentrtClient, trace: LiveTrace, run_id: str) -> None:
    """A child run's steps, drawn before the step of its parent that it ended.

    Locally the trace shows a child's steps as they happen, before the parent's
    step records the child's end; the server streams each run on its own, so a
    child's log is drawn whole when its parent's stream says it ended.
    """
    detail = await client.get_run(run_id)
    for event in detail.events:
        await _show(client, trace, run_id, event)


async def _show(client: AgentrtClient, trace: LiveTrace, run_id: str, event: RunEvent) -> None:
    child = _child_of(event)
    if child is not None:
        await _show_child(client, trace, child)
    trace(run_id, event_of(event))


async def follow(client: AgentrtClient, run_id: str, trace: LiveTrace | None) -> RunResult:
    """Show a run's steps live (with ``trace``) until it ends or waits; its result."""
    if trace is not None:
        trace.log_loaded(run_id, [])
    async for event in client.events(run_id):
        if isinstance(event, ModelDelta):
            continue  # the local trace draws whole steps, not pieces
        if trace is not None:
            await _show(client, trace, run_id, event)
        if event.type == ev.RUN_FINISHED:
            break
        if event.type == ev.RUN_WAITING:
            detail = await client.get_run(run_id)
            if detail.run.status in WAITING_STATUSES:
                break  # someone decided already: it goes on, and so does the trace
    return await _result(client, run_id)


def _trace(args: argparse.Namespace, live: bool) -> LiveTrace | None:
    if not live or args.json:
        return None
    return LiveTrace(style=style(args), on_closed=stop_command())


# -- the commands


async def _cmd_run(args: argparse.Namespace, client: AgentrtClient) -> int:
    flags = {
        "--max-tokens": args.max_tokens, "--max-tool-calls": args.max_tool_calls,
        "--max-cost": args.max_cost, "--deadline": args.deadline,
        "--concurrency": args.concurrency,
    }  # fmt: skip
    local_only = [flag for flag, value in flags.items() if value is not None]
    if local_only:
        raise UsageError(f"{', '.join(local_only)}: not supported against a server yet")
    query = await client.submit(
        args.agent, args.input, session=args.session, idempotency_key=args.idempotency_key
    )
    if args.queue:
        if args.json:
            print_json(run_summary(record_of(query.run)))
        else:
            print(query.run.id)
        return EXIT_OK
    # A key used before may name a run that ended: reported, not traced again (as locally).
    live = not (args.quiet or query.run.finished)
    result = await follow(client, query.run.id, _trace(args, live))
    return finish(args, result, quiet=args.quiet)


async def _cmd_apply(args: argparse.Namespace, client: AgentrtClient) -> int:
    loaded = load_paths(args.filename)  # the local checks first: files, lines, fields
    queries = [item.resource for item in loaded if isinstance(item.resource, Query)]
    for query in queries:
        if query.spec.budgets is not None or query.spec.concurrency is not None:
            raise UsageError(
                f"Query/{query.name}: budgets and concurrency are not supported against a "
                "server yet"
            )
    documents: list[Any] = []
    for path in iter_resource_files(args.filename):
        documents += [doc.data for doc in parse_documents(read_file(path), str(path))]
    records = await client.apply(documents)
    if not args.json:
        for r in records:
            print(f"{r.kind}/{r.name} (namespace {r.namespace}) applied, generation {r.generation}")
    results = []
    for query in queries:
        submitted = await client.submit(
            query.spec.target, query.spec.input, session=query.spec.session,
            idempotency_key=query.spec.idempotency_key,
        )  # fmt: skip
        results.append(await follow(client, submitted.run.id, _trace(args, True)))
    if args.json:
        applied = [
            {"kind": r.kind, "namespace": r.namespace, "name": r.name, "generation": r.generation}
            for r in records
        ]
        print_json(applied + [{"kind": "Query", "run": result.to_dict()} for result in results])
    else:
        for result in results:
            print(render_result(result, style(args)))
    return max((exit_for(result) for result in results), default=EXIT_OK)


async def _cmd_get(args: argparse.Namespace, client: AgentrtClient) -> int:
    kind = kind_of(args.kind)
    records = [
        r
        for r in await client.list_resources(kind)
        if args.namespace in (None, r.namespace) and args.name in (None, r.name)
    ]
    if args.name and not records:
        raise UsageError(f"{kind} {args.name!r} not found; list them with `agentrt get {kind}`")
    if args.json:
        print_json([{**r.body, "generation": r.generation} for r in records])
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


async def _cmd_runs_list(args: argparse.Namespace, client: AgentrtClient) -> int:
    runs = await client.list_runs(
        status=args.status or (), session=args.session, limit=min(args.limit, 1000)
    )
    # The key sees its tenant's runs: another namespace has none to show.
    records = [record_of(r) for r in runs if args.namespace in (None, r.namespace)]
    if args.json:
        print_json([run_summary(r) for r in records])
    else:
        print(render_run_list(records, style(args)))
    return EXIT_OK


async def _cmd_runs_show(args: argparse.Namespace, client: AgentrtClient) -> int:
    view = await _read_run(client, args.run)
    if args.json:
        print_json(view.to_dict())
    else:
        children = {i: (v.run, list(v.events)) for i, v in view.descendants().items()}
        print(render_run_tree(view.run, list(view.events), style(args), children))
    return EXIT_OK


_HANDLERS: dict[str, Handler] = {
    "apply": _cmd_apply,
    "get": _cmd_get,
    "run": _cmd_run,
    "runs list": _cmd_runs_list,
    "runs show": _cmd_runs_show,
}
