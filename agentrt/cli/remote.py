"""The ``agentrt`` command against a server (``--server URL`` / ``AGENTRT_SERVER``).

The commands that work remotely (``apply``, ``get``, ``run``, ``runs list``,
``runs show``, ``runs export``, and the run actions of
:mod:`agentrt.cli.remote_runs`) go through :class:`agentrt.client.AgentrtClient`
instead of opening a store, and print what they print locally: the server's
records are turned back into the runtime's own (runs, events, results) and drawn
by the same renderers and printers, ``agentrt run``'s live trace from the run's
server-sent events (:mod:`agentrt.cli.remote_follow`). The key
(``AGENTRT_API_KEY``) decides the namespace: its tenant. Any other command says
in one line that it does not work against a server, with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from agentrt._proxy import proxy_for
from agentrt.cli import remote_runs
from agentrt.cli._shared import (
    EXIT_OK,
    EXIT_STORE_UNAVAILABLE,
    EXIT_USAGE,
    finish,
    print_json,
    settings_of,
    style,
)
from agentrt.cli.remote_follow import Handler, follow, live_trace, read_run, record_of
from agentrt.cli.render import render_run_list, render_run_tree
from agentrt.cli.resources import kind_of, show_applied, show_apply_end, show_resources
from agentrt.client import AgentrtClient, ApiError
from agentrt.engine import run_summary
from agentrt.errors import UsageError
from agentrt.spec._yaml import parse_documents, read_file
from agentrt.spec.loader import iter_resource_files, load_paths
from agentrt.spec.resources import Query

__all__ = ["handler_for"]


def handler_for(args: argparse.Namespace) -> Callable[[argparse.Namespace], Awaitable[int]]:
    """The remote form of the parsed command; a :class:`UsageError` for one it has not."""
    command = args.command
    if command == "runs":
        command = f"runs {args.runs_command}"
    handler = _HANDLERS.get(command)
    if handler is None:
        raise UsageError(
            f"`agentrt {command}` does not work against a server; run it where the "
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
        args.agent, args.input, session=args.session, double_texting=args.double_texting,
        idempotency_key=args.idempotency_key,
    )  # fmt: skip
    if args.queue:
        if args.json:
            print_json(run_summary(record_of(query.run)))
        else:
            print(query.run.id)
        return EXIT_OK
    # A key used before may name a run that ended: reported, not traced again (as locally).
    live = not (args.quiet or query.run.finished)
    result = await follow(client, query.run.id, live_trace(args, live))
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
    show_applied(args, records)
    results = []
    for query in queries:
        submitted = await client.submit(
            query.spec.target, query.spec.input, session=query.spec.session,
            idempotency_key=query.spec.idempotency_key,
        )  # fmt: skip
        results.append(await follow(client, submitted.run.id, live_trace(args)))
    return show_apply_end(args, records, results)


async def _cmd_get(args: argparse.Namespace, client: AgentrtClient) -> int:
    kind = kind_of(args.kind)
    # The key sees its tenant's resources: another namespace has none to show.
    found = await client.list_resources(kind)
    records = [r for r in found if args.namespace in (None, r.namespace)]
    return show_resources(args, kind, records)


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
    view = await read_run(client, args.run)
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
    **remote_runs.HANDLERS,
}
