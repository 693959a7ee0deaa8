"""The spec of a ``Team`` resource: its nodes, state, loops and routes, or a strategy."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from agentrt.spec._base import NAME, Names, Strict
from agentrt.spec.agent_spec import Budgets, RetryPolicy, SessionPolicy
from agentrt.spec.patterns import Regex

__all__ = [
    "Condition",
    "FanOut",
    "RouteRule",
    "RouteSpec",
    "StateKey",
    "Strategy",
    "TeamLoop",
    "TeamNode",
    "TeamSpec",
]


Scalar = str | int | float | bool


class StateKey(Strict):
    """One key of a team's shared state, and how concurrent writes to it merge."""

    reducer: Literal["last", "append", "merge"] = Field(
        default="last",
        description="last: the write of the latest node in graph order wins; append: a list "
        "of every write, in node (and map item) order; merge: mappings merged in that order",
    )
    rounds: Literal["all", "latest"] = Field(
        default="all",
        description="all: writes of every loop round are reduced; latest: a node run again by "
        "a loop replaces its writes of earlier rounds (the redo supersedes the rejected work)",
    )
    type: Literal["any", "string", "number", "boolean", "list", "object"] = "any"


class Condition(Strict):
    """A test on one key of the shared state (exactly one of the tests)."""

    key: str = Field(description="a state key")
    equals: Scalar | None = None
    not_equals: Scalar | None = None
    matches: Regex | None = Field(default=None, description="a regex searched in the value")
    not_matches: Regex | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [
            t
            for t in ("equals", "not_equals", "matches", "not_matches")
            if t in self.model_fields_set
        ]
        if len(tests) != 1:
            raise ValueError("give exactly one of `equals`, `not_equals`, `matches`, `not_matches`")
        return self


class FanOut(Strict):
    """A ``map`` node: one instance of the member per item of a list, joined in item order."""

    over: str = Field(
        description='a state key holding a list, or "input" (the query input: a JSON list, '
        "else one item per non-empty line)"
    )
    max_items: int = Field(default=100, ge=1, le=10_000)


class RouteRule(Strict):
    """Pick ``member`` when ``match`` (a regex) is found in the routed text."""

    match: Regex
    member: str


class RouteSpec(Strict):
    """A node that chooses one member, by rules or by asking a model; writes its name."""

    members: Names = Field(min_length=1, description="names of nodes it may choose")
    rules: list[RouteRule] = Field(default_factory=list, description="tried in order")
    model: str | None = Field(default=None, description="a Model that names the member")
    default: str | None = Field(default=None, description="when no rule matches")

    @model_validator(mode="after")
    def _how(self) -> RouteSpec:
        if not self.rules and self.model is None:
            raise ValueError("a route needs `rules` or a `model` to choose with")
        return self


class TeamNode(Strict):
    """One node of a team's graph: an agent, a tool, another team, or a route."""

    name: str = Field(pattern=NAME)
    agent: str | None = Field(default=None, description="an Agent (same namespace)")
    tool: str | None = Field(default=None, description="a Tool, called with {input: ...}")
    team: str | None = Field(default=None, description="another Team")
    route: RouteSpec | None = Field(default=None, description="choose one of several nodes")
    input: str = Field(
        default="{input}",
        description="template: {input} (the query), {state.KEY}, {item} (in a map)",
    )
    output: str | None = Field(
        default=None, description="state key the result is written to (default: the node's name)"
    )
    after: Names = Field(default_factory=list, description="nodes that must finish first")
    when: Condition | None = Field(default=None, description="else the node is skipped")
    map: FanOut | None = None
    retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(max_attempts=1),
        description="of a failed node (each attempt sends the same idempotency key); "
        "a route's model call is retried under it too",
    )

    @model_validator(mode="after")
    def _one_member(self) -> TeamNode:
        given = [k for k in ("agent", "tool", "team", "route") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a node needs exactly one of `agent`, `tool`, `team`, `route`")
        if self.route is not None and self.map is not None:
            raise ValueError("a route node cannot be a `map`")
        return self

    @property
    def member(self) -> tuple[str, str]:
        """(kind, name) of what the node runs; ("Route", "") for a route."""
        if self.agent is not None:
            return "Agent", self.agent
        if self.tool is not None:
            return "Tool", self.tool
        if self.team is not None:
            return "Team", self.team
        return "Route", ""

    @property
    def writes(self) -> str:
        """The state key the node's result goes to."""
        return self.output or self.name


class TeamLoop(Strict):
    """A bounded edge back: after node ``after``, while ``when`` holds, run again from ``to``."""

    after: str = Field(description="the node whose end is checked")
    to: str = Field(description="an earlier node; it and what follows it up to `after` rerun")
    when: Condition
    max_rounds: int = Field(ge=2, le=1000, description="rounds in all, the first included")


class Strategy(Strict):
    """A named team shape, built into a graph (see docs/teams.md)."""

    kind: Literal[
        "sequential", "round-robin", "selector", "planner-workers-evaluator", "router", "map"
    ]
    members: list[str] = Field(default_factory=list, description="Agents, in order")
    planner: str | None = Field(default=None, description="planner-workers-evaluator: an Agent")
    workers: list[str] = Field(default_factory=list, description="planner-workers-evaluator")
    evaluator: str | None = Field(default=None, description="planner-workers-evaluator")
    accept: Regex = Field(
        default=r"^\s*ACCEPT", description="regex: the evaluator's reply accepts the work"
    )
    max_rounds: int = Field(default=3, ge=1, le=1000, description="rounds or turns in all")
    rules: list[RouteRule] = Field(default_factory=list, description="router/selector rules")
    model: str | None = Field(default=None, description="router/selector: a Model that chooses")
    over: str = Field(default="input", description='map: a state key or "input"')
    reduce: str | None = Field(default=None, description="map: an Agent joining the results")

    @model_validator(mode="after")
    def _shape(self) -> Strategy:
        k = self.kind
        if k == "planner-workers-evaluator":
            if not (self.planner and self.workers and self.evaluator):
                raise ValueError(
                    "planner-workers-evaluator needs `planner`, `workers` and `evaluator`"
                )
        elif k == "map":
            if len(self.members) != 1:
                raise ValueError("map needs exactly one member (the Agent run per item)")
        elif not self.members:
            raise ValueError(f"{k} needs `members`")
        if k in ("router", "selector") and not self.rules and self.model is None:
            raise ValueError(f"{k} needs `rules` or a `model` to choose with")
        return self


class TeamSpec(Strict):
    """Agents, tools and teams run as one graph, explicit or from a strategy."""

    description: str = ""
    nodes: list[TeamNode] = Field(default_factory=list, description="an explicit graph")
    entry: Names = Field(
        default_factory=list, description="nodes that start the graph (default: the first node)"
    )
    loops: list[TeamLoop] = Field(default_factory=list, description="bounded edges back")
    strategy: Strategy | None = Field(default=None, description="instead of `nodes`")
    state: dict[str, StateKey] = Field(
        default_factory=dict, description="shared state keys (undeclared outputs: reducer last)"
    )
    output: str | None = Field(
        default=None, description="the state key that is the team's answer (default: last node's)"
    )
    concurrency: int = Field(default=4, ge=1, le=1024, description="nodes running at once")
    budgets: Budgets = Field(default_factory=Budgets)
    session: SessionPolicy = Field(
        default_factory=SessionPolicy, description="how a session's turns meet"
    )

    @model_validator(mode="after")
    def _graph_or_strategy(self) -> TeamSpec:
        if bool(self.nodes) == (self.strategy is not None):
            raise ValueError("give either `nodes` (an explicit graph) or a `strategy`")
        if self.strategy is not None and (self.entry or self.loops):
            raise ValueError("`entry` and `loops` are for an explicit graph (`nodes`)")
        return self
