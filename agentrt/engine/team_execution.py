"""A team run as the executor drives it: the team's graph walked to its end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentrt.engine import events as ev
from agentrt.engine.ending import Ending
from agentrt.engine.journal import Journal
from agentrt.engine.plans import TeamRunSpec
from agentrt.engine.result import RunResult
from agentrt.engine.team_steps import TeamSteps
from agentrt.engine.team_walk import TeamReplay, TeamWalk
from agentrt.errors import NondeterminismError
from agentrt.spec.team import team_graph
from agentrt.state.base import Event, RunRecord, Store, Usage
from agentrt.tools.agent import ChildOutcome, ChildRequest

__all__ = ["TeamExecution"]

ChildRunner = Callable[[ChildRequest], Awaitable[ChildOutcome]]


@dataclass
class TeamExecution:
    """One execution of a team run (first start, resume or replay).

    Live, ``run_child`` starts (or finds again) a node's child run and
    ``steps`` makes the team's own model and tool steps; on replay, ``replay``
    holds each node's recorded end and checks its child run.
    """

    run: RunRecord
    plan: TeamRunSpec
    input: str
    events: list[Event]
    journal: Journal
    store: Store
    run_child: ChildRunner
    steps: TeamSteps | None = None
    replay: TeamReplay | None = None
    _state: dict[str, Any] | None = None

    # Cancels and deadlines come from outside the log; so does a budget used up
    # before one of the team's own steps (which parallel nodes had ended then
    # is not in the log).
    stopped_from_outside = frozenset({"cancelled", "timed_out", "budget_exhausted"})

    @property
    def run_context(self) -> None:
        """A team's calls are its nodes' runs: none to pause here."""
        return None

    @property
    def deadline_s(self) -> float | None:
        """The team's deadline, counted from the run's creation."""
        return self.plan.team.spec.budgets.deadline_s

    def started_data(self) -> dict[str, Any]:
        """What ``run.started`` records beyond the owner."""
        resumed = any(e.type == ev.RUN_STARTED for e in self.events)
        return {"resumed": resumed, "team": self.plan.team.name}

    async def body(self) -> Ending:
        """Walk the graph from where the log left it to the team's answer."""
        steps = self.steps
        walk = TeamWalk(
            team_graph(self.plan.team), run_id=self.run.id, namespace=self.run.namespace,
            input=self.input, journal=self.journal, run_child=self.run_child,
            choose=steps.choose if steps else None, run_tool=steps.run_tool if steps else None,
            replay=self.replay,
        )  # fmt: skip
        outcome = await walk.run(self.events if self.replay is None else ())
        self._state = outcome.state
        return Ending.succeeded(outcome.output)

    def end_data(self) -> dict[str, Any]:
        """More for ``run.finished``: the final shared state, which replay must reach."""
        return {"state": self._state} if self._state is not None else {}

    def check_replayed(self, ending: Ending, recorded: dict[str, Any]) -> None:
        """The replayed walk must merge the shared state the log recorded."""
        if "state" in recorded and self._state != recorded["state"]:
            raise NondeterminismError(
                f"replay of team run {self.run.id} merged its shared state to "
                f"{self._state!r}; the log recorded {recorded['state']!r}"
            )

    async def result(self, ending: Ending, *, replay: bool) -> RunResult:
        """The run's outcome; its usage is every node's, added up in the store."""
        run = self.run
        if ending.status in ("waiting", "waiting_approval"):
            usage = Usage()
        elif replay:
            usage = run.usage
        else:
            finished = await self.store.get_run(run.id)
            usage = finished.usage if finished else Usage()
        return RunResult(run.id, ending.status, ending.output, ending.reason, usage)

    async def finished(self, result: RunResult) -> None:
        """A team has no ``on_finish`` hooks of its own."""
