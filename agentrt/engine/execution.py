"""What the executor drives: one run's execution, an agent's or a team's.

:class:`~agentrt.engine.agent_execution.AgentExecution` and
:class:`~agentrt.engine.team_execution.TeamExecution` are the two kinds; the
executor records the run's start and end around :meth:`Execution.body`, and
replays it the same way.
"""

from __future__ import annotations

from typing import Any, Protocol

from agentrt.engine.agent_loop import RunContext
from agentrt.engine.ending import Ending
from agentrt.engine.journal import Journal
from agentrt.engine.result import RunResult
from agentrt.state.base import RunRecord

__all__ = ["Execution"]


class Execution(Protocol):
    """One run being executed: what the executor drives, whatever the kind of run."""

    run: RunRecord
    # Ends replay cannot repeat from the log's steps: they came from outside them.
    stopped_from_outside: frozenset[str]

    @property
    def journal(self) -> Journal:
        """The run's journal: every event of this execution goes through it."""
        ...

    @property
    def run_context(self) -> RunContext | None:
        """The agent loop's context, whose sandboxed calls can be paused (else ``None``)."""
        ...

    @property
    def deadline_s(self) -> float | None:
        """The run's deadline, counted from its creation."""
        ...

    def started_data(self) -> dict[str, Any]:
        """What ``run.started`` records beyond the owner."""
        ...

    async def body(self) -> Ending:
        """Execute the run to its answer (raising what stopped it otherwise)."""
        ...

    def end_data(self) -> dict[str, Any]:
        """More for the ``run.finished`` event."""
        ...

    def check_replayed(self, ending: Ending, recorded: dict[str, Any]) -> None:
        """Raise ``NondeterminismError`` if a replay's answer differs beyond its output."""
        ...

    async def result(self, ending: Ending, *, replay: bool) -> RunResult:
        """The run's outcome as callers get it."""
        ...

    async def finished(self, result: RunResult) -> None:
        """Called once a live run's end is recorded."""
        ...
