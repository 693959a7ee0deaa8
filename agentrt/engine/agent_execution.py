"""An agent run as the executor drives it: session memory, then the reasoning loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentrt.engine.agent_loop import RunContext, run_loop
from agentrt.engine.ending import Ending
from agentrt.engine.history_policy import Turn
from agentrt.engine.journal import Journal
from agentrt.engine.result import RunResult
from agentrt.engine.summaries import session_memory
from agentrt.state.base import Event, RunRecord

__all__ = ["AgentExecution"]


@dataclass
class AgentExecution:
    """One execution of an agent run (first start, resume or replay).

    ``turns`` are the session's earlier turns, ``digest`` what they hash to (a
    resume must find the same history), and ``legacy_summary`` a session
    summary recorded by an older version as an event of its own.
    """

    run: RunRecord
    ctx: RunContext
    turns: list[Turn]
    digest: list[Any]
    resumed: bool
    legacy_summary: Event | None = None

    # What replay cannot repeat from the log's steps: these came from outside them.
    stopped_from_outside = frozenset({"cancelled", "timed_out"})

    @property
    def journal(self) -> Journal:
        """The run's journal (its context's)."""
        return self.ctx.journal

    @property
    def run_context(self) -> RunContext:
        """The loop's context: its sandboxed calls can be paused from outside."""
        return self.ctx

    @property
    def deadline_s(self) -> float | None:
        """The run's deadline, counted from its creation."""
        return self.ctx.spec.budgets.deadline_s

    def started_data(self) -> dict[str, Any]:
        """What ``run.started`` records beyond the owner."""
        return {"resumed": self.resumed, "history": self.digest}

    async def body(self) -> Ending:
        """Fold the session's history as its policy says, then run the loop to an answer."""
        history = await session_memory(self.ctx, self.turns, self.legacy_summary)
        outcome = await run_loop(self.ctx, history)
        return Ending.succeeded(outcome.output)

    def end_data(self) -> dict[str, Any]:
        """More for ``run.finished``: the child runs a parent waiting on this run counts."""
        return {"child_runs": self.ctx.children} if self.ctx.children else {}

    def check_replayed(self, ending: Ending, recorded: dict[str, Any]) -> None:
        """Nothing more than status and output to compare for an agent run."""

    async def result(self, ending: Ending, *, replay: bool) -> RunResult:
        """The run's outcome, with what its context counted."""
        ctx = self.ctx
        return RunResult(
            ctx.run_id, ending.status, ending.output, ending.reason, ctx.usage, ctx.step,
            ctx.children,
        )  # fmt: skip

    async def finished(self, result: RunResult) -> None:
        """The run ended: its ``on_finish`` hooks see the result."""
        await self.ctx.hooks.run("on_finish", self.ctx, result)
