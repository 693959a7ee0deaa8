"""What a team run's log says of its graph, and the pure rules the graph is walked by.

A :class:`Progress` is rebuilt from ``node.started`` and ``node.finished``
events: each node's round, the node instances that ended, the attempts
started (with their keys and tool steps), the state writes and the loops
fired. The functions beside it decide conditions, fill input templates and
list a map's items; none of them does I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from agentrt.engine import events as ev
from agentrt.engine.team_state import StateWrite, fold_state
from agentrt.spec.patterns import search
from agentrt.spec.resources import Condition, TeamLoop, TeamNode
from agentrt.spec.team import TeamGraph
from agentrt.state.base import Event

__all__ = [
    "Attempt",
    "Instance",
    "Progress",
    "fill",
    "holds",
    "map_items",
    "render",
    "segment",
]

Instance = tuple[str, int, int]  # node, round, item
Attempt = tuple[Instance, int]  # an instance and the attempt's number

_TEMPLATE = re.compile(r"\{(input|item|state\.[A-Za-z0-9_.-]+)\}")


def render(value: Any) -> str:
    """A state value as text for a prompt: lists as paragraphs, mappings as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n\n".join(render(v) for v in value)
    return json.dumps(value, sort_keys=True)


def holds(condition: Condition, state: dict[str, Any]) -> bool:
    """Whether ``condition`` holds on ``state`` (a missing key is empty text)."""
    value = state.get(condition.key)
    text = render(value)
    if "equals" in condition.model_fields_set:
        return value == condition.equals or text == str(condition.equals)
    if "not_equals" in condition.model_fields_set:
        return not (value == condition.not_equals or text == str(condition.not_equals))
    if condition.matches is not None:
        return search(condition.matches, text)
    assert condition.not_matches is not None
    return not search(condition.not_matches, text)


@dataclass
class Progress:
    """What the log says of the graph: rounds, finished instances, writes, loop counts."""

    graph: TeamGraph
    rounds: dict[str, int] = field(default_factory=dict)
    finished: dict[Instance, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[Instance, int] = field(default_factory=dict)
    steps: dict[Attempt, int | None] = field(default_factory=dict)  # a tool attempt's step
    keys: dict[Attempt, str] = field(default_factory=dict)  # the key each attempt recorded
    writes: list[tuple[str, StateWrite]] = field(default_factory=list)  # (writer, write)
    fired: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rounds = {n.name: 1 for n in self.graph.nodes}
        nodes = {n.name: n for n in self.graph.nodes}
        self.ancestors = {name: _ancestors(nodes, name) for name in nodes}

    def apply(self, event: Event) -> None:
        """Take in a ``node.started`` or ``node.finished`` event."""
        data = event.data
        inst = ev.node_instance(data)
        if event.type == ev.NODE_STARTED:
            attempt = int(data.get("attempt", 1))
            self.attempts[inst] = max(self.attempts.get(inst, 0), attempt)
            self.steps[(inst, attempt)] = data.get("step")
            self.keys[(inst, attempt)] = str(data.get("key", ""))
        elif event.type == ev.NODE_FINISHED:
            self.finished[inst] = data
            write = self.write_of(inst, data)
            if write is not None:
                self.writes.append((inst[0], write))
            for index in data.get("loops", []):
                self.fire(index)

    def write_of(self, inst: Instance, data: dict[str, Any]) -> StateWrite | None:
        """The state write a node instance's end makes (none unless it succeeded)."""
        if data.get("status") != "succeeded":
            return None
        node = self.graph.node(inst[0])
        return StateWrite(node.writes, data.get("output"), inst[1], self.graph.order(inst[0]),
                          inst[2])  # fmt: skip

    def would_end(self, inst: Instance, data: dict[str, Any]) -> bool:
        """Whether recording ``data`` for ``inst`` ends its node's round (all items)."""
        node, round_ = inst[0], inst[1]
        ended = sum(1 for (n, r, _) in self.finished if n == node and r == round_) + 1
        return ended >= max(int(data.get("items", 1)), 1)

    def fire(self, index: int) -> None:
        """Loop ``index`` fired: the nodes it runs again move to their next round."""
        loop = self.graph.loops[index]
        self.fired[index] = self.fired.get(index, 0) + 1
        for name in segment(self.graph, loop, self.ancestors):
            self.rounds[name] += 1

    def items_of(self, node: str, round_: int) -> int | None:
        """How many map items the node has in ``round_``, once any of them ended."""
        for (name, r, _), data in self.finished.items():
            if name == node and r == round_:
                return int(data.get("items", 1))
        return None

    def done(self, node: str) -> bool:
        """Whether ``node`` has ended (every item of it) in its current round."""
        round_ = self.rounds[node]
        total = self.items_of(node, round_)
        if total is None:
            return False
        ended = sum(1 for (n, r, _) in self.finished if n == node and r == round_)
        return ended >= max(total, 1)

    def view(self, node: str) -> dict[str, Any]:
        """The state ``node`` reads: its ancestors' writes and all earlier rounds'."""
        mine, before = self.ancestors[node], self.rounds[node]
        visible = [w for writer, w in self.writes if writer in mine or w.round < before]
        return fold_state(self.graph.state, visible)

    def final_state(self) -> dict[str, Any]:
        """The shared state every write so far folds to."""
        return fold_state(self.graph.state, [w for _, w in self.writes])


def _ancestors(nodes: dict[str, TeamNode], name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(nodes[name].after)
    while todo:
        dep = todo.pop()
        if dep not in seen and dep in nodes:
            seen.add(dep)
            todo += nodes[dep].after
    return seen


def segment(graph: TeamGraph, loop: TeamLoop, ancestors: dict[str, set[str]]) -> list[str]:
    """The nodes a loop runs again: ``to``, ``after``, and every node between them."""
    return [
        n.name
        for n in graph.nodes
        if n.name in (loop.to, loop.after)
        or (loop.to in ancestors[n.name] and n.name in ancestors[loop.after])
    ]


def fill(template: str, input_: str, state: dict[str, Any], item: Any) -> str:
    """A node's input template with ``{input}``, ``{item}`` and ``{state.KEY}`` filled."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "input":
            return input_
        if name == "item":
            return render(item)
        return render(state.get(name.removeprefix("state.")))

    return _TEMPLATE.sub(one, template)


def map_items(node: TeamNode, input_: str, state: dict[str, Any]) -> list[Any]:
    """The items a ``map`` node runs over: a JSON list or lines, or a state key's values."""
    assert node.map is not None
    if node.map.over == "input":
        try:
            parsed = json.loads(input_)
        except ValueError:
            parsed = None
        values = (
            parsed if isinstance(parsed, list) else [s for s in input_.splitlines() if s.strip()]
        )
    else:
        value = state.get(node.map.over)
        values = value if isinstance(value, list) else ([] if value is None else [value])
    return values[: node.map.max_items]
