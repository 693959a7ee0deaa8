"""What a run executes, frozen when the run is created: its plan and its input.

A run keeps the specs it started with even if the resources are re-applied
later, so resume and replay see exactly what the first attempt saw. The plan
is typed from the moment the catalog resolves it; it becomes JSON once, for the
``run.created`` event, and is parsed back once when a run is taken up from its
log (a resume on another worker, a replay).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict

from agentrt import _json
from agentrt.errors import UsageError
from agentrt.spec.agent_spec import PriorityClass
from agentrt.spec.resources import AgentSpec, Budgets, DoubleTexting, ModelSpec, Team, ToolSpec

__all__ = ["ForkPoint", "RunCreated", "RunSpec", "TeamRunSpec", "with_tags"]


class RunSpec(BaseModel):
    """Agent, models (primary and fallbacks), tools and effective budgets of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str
    namespace: str
    agent_spec: AgentSpec
    models: dict[str, ModelSpec]
    tools: dict[str, ToolSpec]
    budgets: Budgets
    tags: list[str] = []  # the query's, which the Agent's routing rules may route by

    def to_data(self) -> dict[str, Any]:
        """Compact JSON form for the event log (defaults omitted)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_data`."""
        return cls.model_validate(data)

    def model_chain(self) -> list[str]:
        """The agent's model followed by its fallbacks, without repeats."""
        chain = [self.agent_spec.model]
        for name in self.models[self.agent_spec.model].fallbacks:
            if name not in chain:
                chain.append(name)
        return chain


class TeamRunSpec(BaseModel):
    """A Team as one run executes it: the team (with this run's limits) and the
    Models its routes ask and the Tools its tool nodes call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: Team
    models: dict[str, ModelSpec] = {}
    tools: dict[str, ToolSpec] = {}


@dataclass(frozen=True)
class ForkPoint:
    """The run and step a forked run shares its first steps with."""

    run: str
    step: int


@dataclass(frozen=True)
class RunCreated:
    """The ``run.created`` event's content: the input and the frozen plan.

    The log keeps the shape it always had: ``{input, spec}`` for an agent run,
    ``{input, team, models?, tools?}`` for a team run, ``fork`` when the run was
    forked, ``double_texting`` for a turn of a session: the policy it came
    with, which its execution applies to the session's unfinished turns, and
    ``role``: the role of the API key that started it (its child runs inherit it),
    which the tenant's Policies may select calls by, and ``draws_on``: the budget
    accounts of the runs above a child run, which its steps draw on too, and
    ``budget_session``: the session of the turn a child run was started under, whose
    ``per: session`` Budgets it draws on (:mod:`agentrt.engine.budget_scopes`).
    """

    input: str
    plan: RunSpec | TeamRunSpec
    fork: ForkPoint | None = None
    double_texting: DoubleTexting | None = None
    role: str | None = None
    draws_on: tuple[dict[str, Any], ...] = ()  # a child's parents' accounts (budget_scopes)
    budget_session: str | None = None  # a child's: its parent's session, for its Budgets

    @cached_property
    def data(self) -> dict[str, Any]:
        """The JSON form written to the log (computed once)."""
        data: dict[str, Any] = {"input": self.input}
        if isinstance(self.plan, RunSpec):
            data["spec"] = self.plan.to_data()
        else:
            data["team"] = self.plan.team.model_dump(mode="json", exclude_defaults=True)
            for field in ("models", "tools"):
                specs = getattr(self.plan, field)
                if specs:
                    data[field] = {
                        name: spec.model_dump(mode="json", exclude_defaults=True)
                        for name, spec in specs.items()
                    }
        if self.fork is not None:
            data["fork"] = {"run": self.fork.run, "step": self.fork.step}
        if self.double_texting is not None:
            data["double_texting"] = self.double_texting
        if self.role is not None:
            data["role"] = self.role
        if self.draws_on:
            data["draws_on"] = list(self.draws_on)
        if self.budget_session is not None:
            data["budget_session"] = self.budget_session
        return data

    @property
    def priority(self) -> PriorityClass:
        """The priority class of its queries: its Agent's (a team's: normal)."""
        return self.plan.agent_spec.priority if isinstance(self.plan, RunSpec) else "normal"

    @cached_property
    def digest(self) -> bytes:
        """The plan's identity: runs of one plan share prepared tools and clients."""
        key = self.data.get("spec") or {k: self.data.get(k) for k in ("team", "models", "tools")}
        return _json.dumps(key)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RunCreated:
        """Parse a ``run.created`` event's data (raises on a damaged or foreign log)."""
        plan: RunSpec | TeamRunSpec
        if "team" in data:
            plan = TeamRunSpec(
                team=Team.model_validate(data["team"]),
                models={n: ModelSpec.model_validate(m) for n, m in data.get("models", {}).items()},
                tools={n: ToolSpec.model_validate(t) for n, t in data.get("tools", {}).items()},
            )
        else:
            plan = RunSpec.from_data(data["spec"])
        fork = data.get("fork")
        point = ForkPoint(str(fork["run"]), int(fork["step"])) if fork else None
        return cls(
            str(data["input"]), plan, point, data.get("double_texting"), data.get("role"),
            tuple(data.get("draws_on", ())), data.get("budget_session"),
        )  # fmt: skip

    @property
    def session_policy(self) -> DoubleTexting:
        """The double-texting policy its target sets (the query's own is in
        ``double_texting``)."""
        if isinstance(self.plan, RunSpec):
            return self.plan.agent_spec.session.double_texting
        return self.plan.team.spec.session.double_texting

    @property
    def is_team(self) -> bool:
        """Whether the run executes a Team (else an Agent)."""
        return isinstance(self.plan, TeamRunSpec)


def with_tags(created: RunCreated, tags: Sequence[str]) -> RunCreated:
    """``created`` with the query's ``tags`` frozen in its plan (an Agent's run only:
    tags are what its ``routing.rules`` route by)."""
    if not isinstance(created.plan, RunSpec):
        raise UsageError("tags route an Agent's model steps; the query's target is a Team")
    plan = created.plan.model_copy(update={"tags": list(dict.fromkeys(tags))})
    return replace(created, plan=plan)
