"""Run a Team's graph: every node a durable child step, independent nodes in parallel.

The graph's progress is rebuilt from the run's log, so first start, resume and
replay share this code. A node instance, that is (node, round, map item), is
recorded as ``node.started`` before each attempt at it, with the instance's
key (:class:`~agentrt.tools.keys.StepKey`, the same on every attempt); a tool
node's attempt also claims the number of the tool step that performs it. When
the instance ends, ``node.finished`` is recorded with its output and any loop
it fires. A resumed run therefore re-runs no finished node, an interrupted
agent or team node finds its child run again by the key, and an interrupted
tool node's step is reconciled by the journal like any tool step.

A team's own model and tool calls, its routes' and its tool nodes', are
journal steps made through the gateway (see :mod:`agentrt.engine.team_steps`).

Rounds: every node starts in round 1. When a loop fires, each node between
its ``to`` and its ``after`` moves to the next round and runs again. A node is
ready when every node it waits for has ended in its current round. What a node
reads of the shared state is the writes of the nodes it (indirectly) waits
for, plus every write of an earlier round. Those writes are complete when it
starts, so its input does not depend on which branch ended first.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agentrt._text import count
from agentrt.engine import events as ev
from agentrt.engine.journal import Journal
from agentrt.engine.team_progress import (
    Attempt,
    Instance,
    Progress,
    fill,
    holds,
    map_items,
    render,
)
from agentrt.engine.team_state import fold_state
from agentrt.errors import BudgetExhausted, NondeterminismError
from agentrt.spec.patterns import search
from agentrt.spec.resources import TeamNode
from agentrt.spec.team import TeamGraph
from agentrt.state.base import Event, RunUpdate, Usage
from agentrt.tools.agent import ChildOutcome, ChildRequest
from agentrt.tools.keys import StepKey

__all__ = [
    "MemberChooser",
    "TeamFailed",
    "TeamOutcome",
    "TeamReplay",
    "TeamWaiting",
    "TeamWalk",
    "ToolNodeRunner",
    "choose_prompt",
    "pick_member",
    "run_team",
]

ChildRunner = Callable[[ChildRequest], Awaitable[ChildOutcome]]
# (node, input text, the instance's key, the attempt's step or None when an older version
# started it) -> the call's outcome as node.finished data (child_status, output, ...)
ToolNodeRunner = Callable[[TeamNode, str, StepKey, int | None], Awaitable[dict[str, Any]]]
# (route node, text, the instance's key) -> (the model's reply, data for node.finished)
MemberChooser = Callable[[TeamNode, str, StepKey], Awaitable[tuple[str, dict[str, Any]]]]


class TeamWaiting(Exception):
    """A node's child run waits for a person; the team run waits with it."""

    def __init__(self, reason: str, children: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.children = children


class _NodeWaits(Exception):
    def __init__(self, child: str, reason: str | None) -> None:
        super().__init__(child)
        self.child = child
        self.reason = reason


class TeamFailed(Exception):
    """The graph cannot go on: a node failed, or a loop reached its bound."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TeamOutcome:
    """The answer of a team run and its final shared state."""

    output: str
    state: dict[str, Any]


@dataclass(frozen=True)
class TeamReplay:
    """What a replay follows instead of running children: each node instance's recorded
    end, and a check of its child run (replayed in turn by the executor)."""

    finished: dict[Instance, dict[str, Any]]
    check_child: Callable[[str, dict[str, Any]], Awaitable[None]]

    @classmethod
    def of(
        cls, events: Sequence[Event], check_child: Callable[[str, dict[str, Any]], Awaitable[None]]
    ) -> TeamReplay:
        """The recorded ends in ``events``."""
        finished = {ev.node_instance(e.data): e.data for e in events if e.type == ev.NODE_FINISHED}
        return cls(finished, check_child)


# What a node instance's end must repeat on replay, and its defaults when absent.
_DECIDED: dict[str, Any] = {"status": None, "output": None, "loops": [], "exhausted": None}
_CHILD_FIELDS = (
    "status", "output", "child_run", "reason", "child_status", "items", "attempts", "usage",
    "trace", "step",
)  # fmt: skip
_ROUTE_FIELDS = ("status", "output", "reply", "usage", "reason", "step")
# A tool node's outcomes that another attempt would not change: no retry.
_FINAL = frozenset({"unknown", "refused"})


def _listed(usage: Usage) -> list[Any]:
    u = usage
    return [u.input_tokens, u.output_tokens, u.cost_usd, u.model_calls, u.tool_calls]


def _by_rules(node: TeamNode, text: str) -> str | None:
    """The member the first matching rule names; else the default unless a model decides."""
    assert node.route is not None
    for rule in node.route.rules:
        if search(rule.match, text):
            return rule.member
    if node.route.model is not None:
        return None
    if node.route.default is not None:
        return node.route.default
    raise TeamFailed(f"node {node.name!r}: no rule matched and there is no `default`")


def choose_prompt(members: Sequence[str]) -> str:
    """The instructions a routing model gets."""
    return (
        "Choose who handles the request below. Answer with exactly one name from this "
        f"list and nothing else: {', '.join(members)}."
    )


def pick_member(reply: str, members: Sequence[str]) -> str | None:
    """The member a model's reply names: the whole reply, else the earliest name in it."""
    text = reply.strip().strip(".'\"`*").strip()
    for member in members:
        if text.lower() == member.lower():
            return member
    found = [
        (m.start(), member)
        for member in members
        if (m := re.search(rf"(?<![\w-]){re.escape(member)}(?![\w-])", reply, re.IGNORECASE))
    ]
    return min(found)[1] if found else None


async def run_team(
    graph: TeamGraph,
    *,
    run_id: str,
    namespace: str,
    input: str,
    events: Sequence[Event],
    journal: Journal,
    run_child: ChildRunner,
    choose: MemberChooser | None = None,
    run_tool: ToolNodeRunner | None = None,
    replay: TeamReplay | None = None,
) -> TeamOutcome:
    """Run ``graph`` to its end, continuing from what ``events`` record.

    With ``replay``, the graph is walked again from its start with nothing
    written and no child started: each node instance's end comes from the log,
    and every decision (skips, routes, loops fired, the bound reached) must come
    out as recorded.

    Raises:
        TeamFailed: a node failed after its retries, or a loop reached its bound
            with its condition still holding; the reason names the node's path.
        TeamWaiting: a node's child run waits for a person (the others went on).
        NondeterminismError: on replay, the walk needs or decides something
            other than what the log holds.
    """
    walk = TeamWalk(
        graph, run_id=run_id, namespace=namespace, input=input, journal=journal,
        run_child=run_child, choose=choose, run_tool=run_tool, replay=replay,
    )  # fmt: skip
    return await walk.run(() if replay is not None else events)


class TeamWalk:
    """One execution of a team's graph, its state explicit.

    ``progress`` is what the log says of every node instance (rebuilt from it
    on a resume); ``running`` the instances whose attempts are in flight;
    ``waiting`` those whose child run waits for a person. Node instances start
    as soon as what they wait for has ended, at most ``graph.concurrency`` at a
    time.
    """

    def __init__(
        self,
        graph: TeamGraph,
        *,
        run_id: str,
        namespace: str,
        input: str,
        journal: Journal,
        run_child: ChildRunner,
        choose: MemberChooser | None = None,
        run_tool: ToolNodeRunner | None = None,
        replay: TeamReplay | None = None,
    ) -> None:
        self.graph = graph
        self.run_id = run_id
        self.namespace = namespace
        self.input = input
        self.journal = journal
        self.run_child = run_child
        self.choose = choose
        self.run_tool = run_tool
        self.replay = replay
        self.progress = Progress(graph)
        self.running: dict[asyncio.Task[dict[str, Any]], Instance] = {}
        self.waiting: dict[Instance, _NodeWaits] = {}
        self._limit = asyncio.Semaphore(graph.concurrency)

    async def run(self, events: Sequence[Event]) -> TeamOutcome:
        """Walk the graph to its end, after what ``events`` record of it."""
        for event in events:
            self.progress.apply(event)
        for data in self.progress.finished.values():
            if "exhausted" in data:  # recorded before a crash: the run ends the same way
                raise TeamFailed(_exhausted(self.graph, int(data["exhausted"])))
        try:
            await self._advance()
        finally:
            for task in self.running:
                task.cancel()
            await asyncio.gather(*self.running, return_exceptions=True)
        if self.waiting:
            raise self._waits()
        state = self.progress.final_state()
        return TeamOutcome(render(state.get(self.graph.output)), state)

    async def _advance(self) -> None:
        """Start what is ready and record what ends, until nothing more can start."""
        graph = self.graph
        while True:
            for node in graph.nodes:
                if self._startable(node):
                    await self._start(node)
            if not self.running:
                if any(self._startable(n) for n in graph.nodes):
                    continue  # a node ended without a task (skipped, routed): look again
                return
            finished, _ = await asyncio.wait(self.running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(finished, key=lambda t: self.running[t]):
                inst = self.running.pop(task)
                try:
                    data = task.result()
                except _NodeWaits as waits:
                    self.waiting[inst] = waits  # the others go on; the team waits at the end
                    continue
                await self._record(inst, data)
                if data["status"] == "failed":
                    raise self._failed(inst, data)

    def _startable(self, node: TeamNode) -> bool:
        return _ready(self.progress, node) and not any(i[0] == node.name for i in self.waiting)

    async def _record(self, inst: Instance, data: dict[str, Any]) -> None:
        """Record a node instance's end, with the loops it fires (decided now)."""
        graph, progress = self.graph, self.progress
        data = {"node": inst[0], "round": inst[1], "item": inst[2], **data}
        if progress.items_of(inst[0], inst[1]) is None and "items" not in data:
            data["items"] = 1
        # Does this end the node? Then decide its loops now, in the same event.
        if data.get("status") != "failed" and progress.would_end(inst, data):
            write = progress.write_of(inst, data)
            writes = [w for _, w in progress.writes] + ([write] if write else [])
            state = fold_state(graph.state, writes)
            fire, exhausted = _loops_after(graph, progress, inst[0], state)
            data["loops"] = fire
            if exhausted is not None:
                data["exhausted"] = exhausted
        if self.replay is not None:
            data = _as_recorded(self.replay, inst, data)
        else:
            used = data.get("usage")  # the child's (or route model's) use counts for the team
            update = RunUpdate(usage=Usage(*used)) if used else None
            await self.journal.append(ev.NODE_FINISHED, data, update=update, durable=True)
        progress.apply(Event(0, ev.NODE_FINISHED, data, 0.0))
        if "exhausted" in data:
            raise TeamFailed(_exhausted(graph, int(data["exhausted"])))

    async def _start(self, node: TeamNode) -> None:
        """Start a ready node: skip it, route it, or start an attempt per map item."""
        progress = self.progress
        round_ = progress.rounds[node.name]
        state = progress.view(node.name)
        if node.when is not None and not holds(node.when, state):
            await self._record((node.name, round_, 0), {"status": "skipped", "items": 1})
            return
        if node.route is not None:
            inst = (node.name, round_, 0)
            routed = await self._route(node, inst, fill(node.input, self.input, state, None))
            await self._record(inst, routed)
            if routed["status"] == "failed":
                raise TeamFailed(str(routed.get("reason")))
            return
        items: list[Any] = [None]
        if node.map is not None:
            items = map_items(node, self.input, state)
            if not items:
                ended = {"status": "succeeded", "output": None, "items": 0}
                await self._record((node.name, round_, 0), ended)
                return
        for index, item in enumerate(items):
            inst = (node.name, round_, index)
            if inst in progress.finished or inst in self.running.values() or inst in self.waiting:
                continue
            text = fill(node.input, self.input, state, item)
            task = asyncio.create_task(self._perform(node, inst, text, len(items)))
            self.running[task] = inst

    async def _route(self, node: TeamNode, inst: Instance, text: str) -> dict[str, Any]:
        """A route node's end: the member its rules, or its model, chose."""
        assert node.route is not None
        member = _by_rules(node, text)
        if member is not None:
            return {"status": "succeeded", "output": member}
        model = node.route.model
        assert model is not None
        if self.replay is not None:  # the model's choice is in the log
            return {k: v for k, v in _recorded(self.replay, inst).items() if k in _ROUTE_FIELDS}
        if self.choose is None:
            raise TeamFailed(f"node {node.name!r}: no model client to route with")
        # A failure is recorded as the node's end, so that a replay fails the same way.
        try:
            reply, step = await self.choose(node, text, StepKey.node_instance(self.run_id, *inst))
        except TeamFailed as failed:
            return {"status": "failed", "reason": failed.reason}
        member = pick_member(reply, node.route.members) or node.route.default
        if member is None:
            return {
                "status": "failed",
                "reason": f"node {node.name!r}: model {model!r} answered {reply[:80]!r}, which "
                f"names none of {', '.join(node.route.members)}; add a `default` or rules",
                "reply": reply,
                **step,
            }
        return {"status": "succeeded", "output": member, "reply": reply, **step}

    async def _perform(
        self, node: TeamNode, inst: Instance, text: str, items: int
    ) -> dict[str, Any]:
        """A node instance's attempts, retried as its policy says, to its end."""
        if self.replay is not None:
            recorded = _recorded(self.replay, inst)
            if recorded.get("child_run"):
                await self.replay.check_child(str(recorded["child_run"]), recorded)
            return {k: recorded[k] for k in _CHILD_FIELDS if k in recorded}
        attempt = max(self.progress.attempts.get(inst, 1), 1)
        used = Usage()
        key = StepKey.node_instance(self.run_id, *inst)  # the same on every attempt
        while True:
            outcome, called = await self._attempt(node, inst, text, key, attempt)
            used = used + outcome.usage
            if outcome.status in ("waiting", "waiting_approval"):
                raise _NodeWaits(outcome.run_id, outcome.reason)
            if outcome.status == "succeeded" or outcome.status in _FINAL:
                break
            if attempt >= node.retry.max_attempts:
                break
            await asyncio.sleep(node.retry.backoff(attempt))
            attempt += 1
        status = "succeeded" if outcome.status == "succeeded" else "failed"
        data: dict[str, Any] = {
            "status": status, "output": outcome.output, "reason": outcome.reason,
            "child_status": outcome.status, "items": items, "attempts": attempt,
        }  # fmt: skip
        if outcome.run_id:
            data["child_run"] = outcome.run_id
            data["usage"] = _listed(used)
        if called.get("trace"):
            data["trace"] = called["trace"]
        if called.get("step") is not None:
            data["step"] = called["step"]  # the last attempt's tool step
        return data

    async def _attempt(
        self, node: TeamNode, inst: Instance, text: str, key: StepKey, attempt: int
    ) -> tuple[ChildOutcome, dict[str, Any]]:
        """One attempt at a node instance, its start recorded first (unless a resume
        finds it recorded): a child run, or a call of the node's Tool."""
        kind, target = node.member
        if self.progress.attempts.get(inst, 0) < attempt:
            where = {"node": inst[0], "round": inst[1], "item": inst[2]}
            started = {**where, "attempt": attempt, "key": str(key), "kind": kind,
                       "target": target}  # fmt: skip
            if kind == "Tool":  # claimed before the start is durable: never reused
                started["step"] = self.journal.new_step()
            await self.journal.append(ev.NODE_STARTED, started, durable=True)
            self.progress.apply(Event(0, ev.NODE_STARTED, started, 0.0))
        async with self._limit:
            if kind == "Tool":
                if self.run_tool is None:
                    raise TeamFailed(f"node {node.name!r}: no tool runner")
                step = self.progress.steps.get((inst, attempt))
                called = await self.run_tool(node, text, key, step)
                outcome = ChildOutcome("", called["child_status"], called.get("output"),
                                       called.get("reason"), Usage())  # fmt: skip
                return outcome, called
            asked = _child_request(node, text, self.namespace, key, self.progress, (inst, attempt))
            # The child draws on the team's account (and those above it) as well as its own.
            scope = self.journal.scope
            asked = replace(asked, draws_on=scope.above, budget_session=scope.session)
            return await self.run_child(asked), {}

    def _failed(self, inst: Instance, data: dict[str, Any]) -> TeamFailed | BudgetExhausted:
        """Why the team fails with node instance ``inst``, and where in the graph it is;
        a node whose child could not reserve a step on the team's own budget account
        stops the team ``budget_exhausted`` (it is the team's limit that was reached)."""
        graph = self.graph
        node = graph.node(inst[0])
        kind, target = node.member
        reason = str(data.get("reason") or "")
        if data["child_status"] == "budget_exhausted" and (
            f"budget {self.namespace}/run:{self.run_id}: " in reason
        ):
            return BudgetExhausted(f"node {inst[0]!r} ({kind} {target}): {reason}")
        return TeamFailed(
            f"node {inst[0]!r} ({kind} {target}, round {inst[1]}"
            + (f", item {inst[2]}" if node.map else "")
            + f") ended {data['child_status']} after "
            f"{count(data['attempts'], 'attempt')}: "
            f"{data.get('reason') or 'no reason given'}; path: {graph.name} → "
            f"{' → '.join(_path(graph, inst[0]))}"
            + (f" (child run {data['child_run']})" if data.get("child_run") else "")
        )

    def _waits(self) -> TeamWaiting:
        """The team waits: which node instances' child runs wait for a person."""
        return TeamWaiting(
            "; ".join(
                f"node {inst[0]!r} (round {inst[1]}) waits for a person in child run "
                f"{w.child}: {w.reason}"
                for inst, w in sorted(self.waiting.items())
            )
            + "; the team run goes on when they end",
            sorted({w.child for w in self.waiting.values()}),
        )


def _child_request(
    node: TeamNode,
    text: str,
    namespace: str,
    key: StepKey,
    progress: Progress,
    attempt: Attempt,
) -> ChildRequest:
    """What an agent or team node's attempt asks for: its child run, found again by the key.

    A start recorded by an older version holds the key its child was created with.
    """
    kind, target = node.member
    recorded = progress.keys.get(attempt, str(key))
    if recorded and recorded != str(key):
        return ChildRequest(target, text, namespace, key.run_id, recorded, None, kind=kind)
    return ChildRequest(target, text, namespace, key.run_id, str(key), None, kind, attempt[1])


def _recorded(replay: TeamReplay, inst: Instance) -> dict[str, Any]:
    recorded = replay.finished.get(inst)
    if recorded is None:
        node, round_, item = inst
        raise NondeterminismError(
            f"replay needs node {node!r} round {round_} item {item}, which the log never ran"
        )
    return recorded


def _as_recorded(replay: TeamReplay, inst: Instance, data: dict[str, Any]) -> dict[str, Any]:
    """The recorded end of ``inst``, once what replay decided matches it."""
    recorded = _recorded(replay, inst)
    for key, default in _DECIDED.items():
        if data.get(key, default) != recorded.get(key, default):
            raise NondeterminismError(
                f"replay of node {inst[0]!r} round {inst[1]} item {inst[2]} decided "
                f"{key}={data.get(key, default)!r}; the log has {recorded.get(key, default)!r}"
            )
    return recorded


def _ready(progress: Progress, node: TeamNode) -> bool:
    """Not ended in its round, and everything it waits for has."""
    return not progress.done(node.name) and all(progress.done(dep) for dep in node.after)


def _loops_after(
    graph: TeamGraph, progress: Progress, node: str, state: dict[str, Any]
) -> tuple[list[int], int | None]:
    """The loop to fire after ``node`` ended (the first whose condition holds), or the
    loop whose condition holds but whose rounds are used up."""
    for index, loop in enumerate(graph.loops):
        if loop.after == node and holds(loop.when, state):
            if progress.fired.get(index, 0) + 1 >= loop.max_rounds:
                return [], index
            return [index], None
    return [], None


def _exhausted(graph: TeamGraph, index: int) -> str:
    loop = graph.loops[index]
    return (
        f"loop after {loop.after!r} back to {loop.to!r} used all its "
        f"{count(loop.max_rounds, 'round')} (max_rounds) and its condition on "
        f"{loop.when.key!r} still holds; "
        f"raise max_rounds or see the last {loop.when.key!r} in `agentrt runs show`"
    )


def _path(graph: TeamGraph, name: str) -> list[str]:
    """One chain of dependencies from an entry to ``name``."""
    path = [name]
    while graph.node(path[0]).after:
        path.insert(0, graph.node(path[0]).after[0])
    return path
