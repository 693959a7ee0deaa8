"""Commands about resources: ``apply`` (validate and store), ``get`` (list), ``graph show``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from agentrt._text import plural
from agentrt.cli._shared import (
    EXIT_OK,
    exit_for,
    print_json,
    runtime,
    settings_of,
    style,
    with_store,
)
from agentrt.cli.render import render_result
from agentrt.engine import RunResult
from agentrt.errors import UsageError
from agentrt.spec.crossrefs import check_references
from agentrt.spec.loader import load_paths
from agentrt.spec.resources import KINDS, Query, Team
from agentrt.spec.team import team_graph, to_dot, to_mermaid

__all__ = ["Stored", "add_parsers", "kind_of", "show_applied", "show_apply_end", "show_resources"]


class Stored(Protocol):
    """A stored resource as the commands show it: the store's record, or the server's."""

    @property
    def kind(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def generation(self) -> int: ...
    @property
    def body(self) -> Mapping[str, Any]: ...
    @property
    def updated_at(self) -> float: ...


def add_parsers(sub: Any) -> None:
    """Add ``apply``, ``get`` and ``graph`` to ``sub`` (from ``add_subparsers``)."""
    a = sub.add_parser("apply", help="validate and store resources")
    a.add_argument("-f", "--filename", action="append", required=True, help="file or directory")
    a.set_defaults(handler=_cmd_apply)

    g = sub.add_parser("get", help="list stored resources")
    g.add_argument("kind", help=f"{', '.join(KINDS)} (case-insensitive, plural ok)")
    g.add_argument("name", nargs="?")
    g.add_argument("-n", "--namespace")
    g.set_defaults(handler=_cmd_get)

    gr = sub.add_parser("graph", help="draw a Team's graph")
    grsub = gr.add_subparsers(dest="graph_command", required=True, metavar="COMMAND")
    gs = grsub.add_parser("show", help="print a Team's graph as Mermaid (or DOT)")
    gs.add_argument("team", help="name of a Team")
    gs.add_argument("--dot", action="store_true", help="Graphviz DOT instead of Mermaid")
    gs.add_argument("-f", "--filename", action="append", help="read it from files, not the store")
    gs.add_argument("-n", "--namespace", default="default")
    gr.set_defaults(handler=_cmd_graph)


async def _cmd_apply(args: argparse.Namespace) -> int:
    loaded = load_paths(args.filename)
    queries = [item.resource for item in loaded if isinstance(item.resource, Query)]
    async with runtime(args, live=bool(queries)) as rt:
        records = await rt.apply(loaded, by=settings_of(args).user)
        show_applied(args, records)
        # A Query becomes a run; its idempotency key makes re-applying the file safe.
        results = []
        for query in queries:
            run = await rt.submit_query(query)
            results.append(await rt.wait(run.id))
    return show_apply_end(args, records, results)


def show_applied(args: argparse.Namespace, records: Sequence[Stored]) -> None:
    """The line of each resource ``apply`` stored (none with ``--json``)."""
    if not args.json:
        for r in records:
            print(f"{r.kind}/{r.name} (namespace {r.namespace}) applied, generation {r.generation}")


def show_apply_end(
    args: argparse.Namespace, records: Sequence[Stored], results: Sequence[RunResult]
) -> int:
    """What ``apply`` prints once its Queries ran (all of it with ``--json``); its exit code."""
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


async def _cmd_get(args: argparse.Namespace) -> int:
    kind = kind_of(args.kind)
    store = await with_store(args, read_only=True)
    try:
        records = await store.list_resources(kind, args.namespace)
    finally:
        await store.close()
    return show_resources(args, kind, records)


def show_resources(args: argparse.Namespace, kind: str, records: Sequence[Stored]) -> int:
    """What ``get`` prints of the ``kind`` resources found (the one named, if one)."""
    if args.name:
        records = [r for r in records if r.name == args.name]
        if not records:
            raise UsageError(f"{kind} {args.name!r} not found; list them with `agentrt get {kind}`")
    if args.json:
        print_json([{**r.body, "generation": r.generation} for r in records])
        return EXIT_OK
    if args.name:
        import yaml

        for r in records:
            body = {**r.body, "status": {"generation": r.generation}}
            print(yaml.safe_dump(body, sort_keys=False))
        return EXIT_OK
    print(f"{'NAMESPACE':<16}{'NAME':<28}{'GENERATION':<12}UPDATED")
    for r in records:
        updated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.updated_at))
        print(f"{r.namespace:<16}{r.name:<28}{r.generation:<12}{updated}")
    return EXIT_OK


def kind_of(raw: str) -> str:
    """The resource kind ``raw`` names (case-insensitive, plural ok)."""
    for kind in KINDS:
        if raw.lower() in (kind.lower(), plural(kind).lower()):
            return kind
    raise UsageError(f"unknown kind {raw!r}; use one of: {', '.join(KINDS)}")


async def _cmd_graph(args: argparse.Namespace) -> int:
    team = await _find_team(args)
    graph = team_graph(team)
    if args.json:
        print_json({"team": team.name, "mermaid": to_mermaid(graph), "dot": to_dot(graph)})
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
        store = await with_store(args, read_only=True)
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
