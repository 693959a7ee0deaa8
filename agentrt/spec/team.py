"""A Team as a graph: strategies built into nodes and loops, checks, and drawings.

A team's graph is a set of nodes joined by dependencies (``after``: a node
starts when all of them have ended) and by bounded loops (after a node, while
a condition on the shared state holds, run again from an earlier node, at most
``max_rounds`` rounds). A named strategy is built into the same form by
:func:`team_graph`, so that one executor runs both, and :func:`graph_issues`
checks both the same way: dependencies cannot form a cycle (a cycle only
exists as a loop, which has a bound), every node is reachable from an entry,
and every name a node mentions is defined.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from agentrt._text import count
from agentrt.errors import SpecIssue
from agentrt.spec.loader import Loaded, field_path
from agentrt.spec.resources import (
    Condition,
    FanOut,
    RouteSpec,
    StateKey,
    Strategy,
    Team,
    TeamLoop,
    TeamNode,
    TeamSpec,
)

__all__ = [
    "TeamGraph",
    "graph_issues",
    "members_of",
    "team_graph",
    "team_issues",
    "to_dot",
    "to_mermaid",
]

_STATE_REF = re.compile(r"\{state\.([A-Za-z0-9_.-]+)\}")
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class TeamGraph:
    """The graph a team runs: nodes in order, entries, loops, state keys and the answer key."""

    name: str
    nodes: tuple[TeamNode, ...]
    entry: tuple[str, ...]
    loops: tuple[TeamLoop, ...]
    state: dict[str, StateKey] = field(default_factory=dict)
    output: str = ""
    concurrency: int = 4

    def node(self, name: str) -> TeamNode:
        """The node called ``name``."""
        return next(n for n in self.nodes if n.name == name)

    def order(self, name: str) -> int:
        """The node's position: ties between parallel writers go to the later one."""
        return next(i for i, n in enumerate(self.nodes) if n.name == name)


def team_graph(team: Team) -> TeamGraph:
    """The graph of ``team``: its own nodes, or those its strategy builds."""
    spec = team.spec
    if spec.strategy is not None:
        nodes, loops, default_output = _build(spec.strategy)
        entry: tuple[str, ...] = (nodes[0].name,)
    else:
        nodes, loops = list(spec.nodes), list(spec.loops)
        entry = tuple(spec.entry) or (nodes[0].name,)
        default_output = nodes[-1].writes
    state = dict(spec.state)
    if spec.strategy is not None and spec.strategy.kind == "planner-workers-evaluator":
        # Every worker's, in order, of the latest round: a rejected round's are redone.
        state.setdefault("findings", StateKey(reducer="append", rounds="latest"))
    for node in nodes:  # an undeclared output: a map's collects, any other's last wins
        state.setdefault(node.writes, StateKey(reducer="append" if node.map else "last"))
    return TeamGraph(
        team.name, tuple(nodes), entry, tuple(loops), state, spec.output or default_output,
        spec.concurrency,
    )  # fmt: skip


def _agent(name: str, agent: str, **kw: object) -> TeamNode:
    return TeamNode.model_validate({"name": name, "agent": agent, **kw})


def _node_names(members: list[str]) -> list[str]:
    """A node per member, named after it (numbered when a member comes twice)."""
    return [m if members.count(m) == 1 else f"{m}-{i + 1}" for i, m in enumerate(members)]


def _build(s: Strategy) -> tuple[list[TeamNode], list[TeamLoop], str]:
    """Nodes, loops and the answer's state key of a strategy."""
    names = _node_names(s.members)
    chain = list(zip([None, *names], names, s.members, strict=False))
    if s.kind == "sequential":
        nodes = [
            _agent(n, m, **({"after": [prev], "input": f"{{state.{prev}}}"} if prev else {}))
            for prev, n, m in chain
        ]
        return nodes, [], names[-1]
    if s.kind == "round-robin":
        nodes = [
            _agent(n, m, after=[prev] if prev else [], input="{input}\n\n{state.transcript}",
                   output="transcript")
            for prev, n, m in chain
        ]  # fmt: skip
        loops = []
        if s.max_rounds > 1:
            again = Condition(key="transcript", not_matches=r"\bDONE\b")
            loops = [TeamLoop(after=names[-1], to=names[0], when=again,
                              max_rounds=s.max_rounds)]  # fmt: skip
        return nodes, loops, "transcript"
    if s.kind == "planner-workers-evaluator":
        assert s.planner and s.evaluator
        plan = _agent("plan", s.planner, input="{input}\n\n{state.feedback}", output="plan")
        workers = [
            _agent(f"work-{i + 1}", w, after=["plan"], input="{state.plan}", output="findings")
            for i, w in enumerate(s.workers)
        ]
        evaluate = _agent(
            "evaluate", s.evaluator, after=[w.name for w in workers],
            input="{input}\n\n{state.findings}", output="feedback",
        )  # fmt: skip
        loops = []
        if s.max_rounds > 1:
            rejected = Condition(key="feedback", not_matches=s.accept)
            loops = [TeamLoop(after="evaluate", to="plan", when=rejected, max_rounds=s.max_rounds)]
        return [plan, *workers, evaluate], loops, "findings"
    if s.kind in ("router", "selector"):
        route = TeamNode(
            name="route",
            route=RouteSpec(
                members=names,
                rules=[
                    r.model_copy(update={"member": names[s.members.index(r.member)]})
                    if r.member in s.members
                    else r
                    for r in s.rules
                ],
                model=s.model,
            ),
            input="{input}" if s.kind == "router" else "{input}\n\n{state.transcript}",
        )
        output = "answer" if s.kind == "router" else "transcript"
        members = [
            _agent(n, m, after=["route"], when={"key": "route", "equals": n}, output=output)
            for _, n, m in chain
        ]
        loops = []
        if s.kind == "selector" and s.max_rounds > 1:
            again = Condition(key="transcript", not_matches=r"\bDONE\b")
            loops = [TeamLoop(after=m.name, to="route", when=again, max_rounds=s.max_rounds)
                     for m in members]  # fmt: skip
        return [route, *members], loops, output
    # map: one member per item, then an optional reducer
    member = s.members[0]
    each = _agent("each", member, input="{item}", output="results", map=FanOut(over=s.over))
    if s.reduce is None:
        return [each], [], "results"
    reduce = _agent("reduce", s.reduce, after=["each"], input="{state.results}", output="answer")
    return [each, reduce], [], "answer"


# --- checks --------------------------------------------------------------------


def _close(name: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(options), n=1)
    return f"did you mean {match[0]!r}?" if match else ""


def _cycle(nodes: dict[str, TeamNode]) -> list[str] | None:
    """A dependency cycle (as a path a → ... → a), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done or name not in nodes:
            return None
        path.append(name)
        for dep in nodes[name].after:
            found = visit(dep)
            if found:
                return found
        path.pop()
        done.add(name)
        return None

    for name in nodes:
        found = visit(name)
        if found:
            return list(reversed(found))
    return None


def _descendants(nodes: dict[str, TeamNode], start: Iterable[str]) -> set[str]:
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for node in nodes.values():
        for dep in node.after:
            if dep in children:
                children[dep].append(node.name)
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        todo += children[name]
    return seen


def graph_issues(graph: TeamGraph, *, strategy: bool = False) -> list[tuple[Loc, str, str]]:
    """What is wrong with a team's graph, as (field location, message, fix).

    For a strategy every location is the strategy itself: its nodes are built.
    """
    issues: list[tuple[Loc, str, str]] = []
    where: Loc = ("spec", "strategy") if strategy else ("spec",)
    nodes = {node.name: node for node in graph.nodes}
    names = list(nodes)

    def add(loc: Loc, message: str, fix: str) -> None:
        issues.append((where if strategy else (*where, *loc), message, fix))

    def one_of(name: str, options: Iterable[str] = names) -> str:
        return _close(name, options) or f"use one of: {', '.join(options)}"

    seen: set[str] = set()
    for i, node in enumerate(graph.nodes):
        if node.name in seen:
            add(("nodes", i, "name"), f"node {node.name!r} is defined twice", "rename one")
        seen.add(node.name)
        for j, dep in enumerate(node.after):
            if dep not in nodes:
                add(("nodes", i, "after", j), f"{node.name!r} waits for unknown node {dep!r}",
                    one_of(dep))  # fmt: skip
        route = node.route
        for j, member in enumerate(route.members if route else []):
            if member not in nodes:
                add(("nodes", i, "route", "members", j), f"route may choose unknown node "
                    f"{member!r}", one_of(member))  # fmt: skip
        for j, rule in enumerate(route.rules if route else []):
            if route and rule.member not in route.members:
                message = f"rule picks {rule.member!r}, not one of the route's members"
                add(("nodes", i, "route", "rules", j, "member"), message,
                    one_of(rule.member, route.members))  # fmt: skip
    for j, name in enumerate(graph.entry):
        if name not in nodes:
            add(("entry", j), f"entry {name!r} is not a node", one_of(name))
    cycle = _cycle(nodes)
    if cycle:
        add(("nodes",), "unbounded cycle: " + " → ".join(cycle) + " (each waits for the next)",
            "remove one of these `after` entries; to repeat work, add a bounded loop: "
            "`loops: [{after: LAST, to: FIRST, when: ..., max_rounds: N}]`")  # fmt: skip
    for j, loop in enumerate(graph.loops):
        for end in ("after", "to"):
            name = getattr(loop, end)
            if name not in nodes:
                add(("loops", j, end), f"the loop's `{end}` is unknown node {name!r}", one_of(name))
        ends_known = loop.after in nodes and loop.to in nodes
        if ends_known and not cycle and loop.after not in _descendants(nodes, [loop.to]):
            message = (
                f"the loop goes back to {loop.to!r}, which does not come before {loop.after!r}"
            )
            add(("loops", j, "to"), message, f"go back to {loop.after!r} or to a node it waits for")
    if not cycle and all(e in nodes for e in graph.entry):
        reachable = _descendants(nodes, graph.entry)
        for i, node in enumerate(graph.nodes):
            if node.name not in reachable:
                why = "it waits for nothing and is not an entry" if not node.after else (
                    "no entry leads to it")  # fmt: skip
                add(("nodes", i, "name"), f"node {node.name!r} is unreachable: {why}",
                    f"add `after: [...]` to it, or list it in `entry` (now: "
                    f"{', '.join(graph.entry)})")  # fmt: skip
    written = {n.writes for n in graph.nodes} | set(graph.state)
    for i, node in enumerate(graph.nodes):
        keys: list[tuple[str, Loc]] = [(k, ("input",)) for k in _STATE_REF.findall(node.input)]
        if node.when is not None:
            keys.append((node.when.key, ("when", "key")))
        if node.map is not None and node.map.over != "input":
            keys.append((node.map.over, ("map", "over")))
        for key, sub in keys:
            if key.split(".")[0] not in written:
                add(("nodes", i, *sub), f"state key {key!r} is never written",
                    _close(key, written) or "write it with a node's `output`")  # fmt: skip
    for j, loop in enumerate(graph.loops):
        if loop.when.key not in written:
            add(("loops", j, "when", "key"), f"state key {loop.when.key!r} is never written",
                _close(loop.when.key, written) or "write it with a node's `output`")  # fmt: skip
    return issues


def team_issues(item: Loaded) -> list[SpecIssue]:
    """The graph issues of a loaded Team, as spec issues with file and line."""
    team = item.resource
    assert isinstance(team, Team)
    graph = team_graph(team)
    label = f"Team/{team.name}"
    return [
        SpecIssue(item.file, label, field_path(loc), message, fix, item.line_of(loc))
        for loc, message, fix in graph_issues(graph, strategy=team.spec.strategy is not None)
    ]


def members_of(spec: TeamSpec) -> list[tuple[Loc, str, str]]:
    """(field location, kind, name) of every Agent, Tool, Team and Model a team uses."""
    out: list[tuple[Loc, str, str]] = []
    s = spec.strategy
    if s is not None:
        for i, m in enumerate(s.members):
            out.append((("spec", "strategy", "members", i), "Agent", m))
        for key in ("planner", "evaluator", "reduce"):
            if getattr(s, key):
                out.append((("spec", "strategy", key), "Agent", getattr(s, key)))
        for i, w in enumerate(s.workers):
            out.append((("spec", "strategy", "workers", i), "Agent", w))
        if s.model:
            out.append((("spec", "strategy", "model"), "Model", s.model))
        return out
    for i, node in enumerate(spec.nodes):
        kind, name = node.member
        if kind != "Route":
            out.append((("spec", "nodes", i, kind.lower()), kind, name))
        elif node.route is not None and node.route.model:
            out.append((("spec", "nodes", i, "route", "model"), "Model", node.route.model))
    return out


# --- drawings ------------------------------------------------------------------


def _condition(c: Condition) -> str:
    for test, symbol in (("equals", "=="), ("not_equals", "!="), ("matches", "~"),
                         ("not_matches", "!~")):  # fmt: skip
        if test in c.model_fields_set:
            return f"{c.key} {symbol} {getattr(c, test)}"
    return c.key


def _label(node: TeamNode) -> str:
    kind, name = node.member
    what = f"route: {' | '.join(node.route.members)}" if node.route else f"{kind.lower()}: {name}"
    if node.map is not None:
        what = f"map over {node.map.over}: {what}"
    return f"{node.name}\n{what}"


def _edges(graph: TeamGraph) -> list[tuple[str, str, str, bool]]:
    """(from, to, label, is_loop) of every edge."""
    edges = []
    for node in graph.nodes:
        label = f"when {_condition(node.when)}" if node.when else ""
        edges += [(dep, node.name, label, False) for dep in node.after]
    for loop in graph.loops:
        label = f"while {_condition(loop.when)} (max {count(loop.max_rounds, 'round')})"
        edges.append((loop.after, loop.to, label, True))
    return edges


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", "<br/>")


def to_mermaid(graph: TeamGraph) -> str:
    """The graph as a Mermaid flowchart."""
    ids = {n.name: f"n{i}" for i, n in enumerate(graph.nodes)}
    lines = ["flowchart TD", "    start((start))"]
    for node in graph.nodes:
        shape = ('{{"', '"}}') if node.route else (('[["', '"]]') if node.map else ('["', '"]'))
        lines.append(f"    {ids[node.name]}{shape[0]}{_mermaid_text(_label(node))}{shape[1]}")
    lines += [f"    start --> {ids[e]}" for e in graph.entry if e in ids]
    for src, dst, label, loop in _edges(graph):
        if src not in ids or dst not in ids:
            continue
        arrow = "-.->" if loop else "-->"
        text = f'|"{_mermaid_text(label)}"|' if label else ""
        lines.append(f"    {ids[src]} {arrow}{text} {ids[dst]}")
    return "\n".join(lines)


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(graph: TeamGraph) -> str:
    """The graph in Graphviz DOT."""
    lines = [f'digraph "{_dot_text(graph.name)}" {{', "  rankdir=TB;",
             '  "start" [shape=circle, label="start"];']  # fmt: skip
    for node in graph.nodes:
        shape = "diamond" if node.route else ("box3d" if node.map else "box")
        lines.append(
            f'  "{_dot_text(node.name)}" [shape={shape}, label="{_dot_text(_label(node))}"];'
        )
    lines += [f'  "start" -> "{_dot_text(e)}";' for e in graph.entry]
    for src, dst, label, loop in _edges(graph):
        attrs = [f'label="{_dot_text(label)}"'] if label else []
        attrs += ["style=dashed", "constraint=false"] if loop else []
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f'  "{_dot_text(src)}" -> "{_dot_text(dst)}"{suffix};')
    lines.append("}")
    return "\n".join(lines)
