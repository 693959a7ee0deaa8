"""How a run ends: one mapping from what stopped an execution to its recorded end.

Agent runs and team runs, live and replayed, end through these functions, so a
status means the same whatever kind of run reached it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from agentrt.engine.journal import ApprovalPending, LogEnds, StepUnknown
from agentrt.engine.team_walk import TeamFailed, TeamWaiting
from agentrt.errors import (
    BudgetExhausted,
    CancelRequested,
    NondeterminismError,
    RunError,
    StepTimeout,
    StoreError,
)
from agentrt.state.base import RunRecord, RunStatus

__all__ = ["CANCELLED", "Ending", "live_ending", "replayed_status"]

CANCELLED = "cancelled on request"

# What replay accepts in place of an end that came from outside the log's steps
# (a cancel, a deadline): the steps may stop anywhere.
_STOPPED_FROM_OUTSIDE = (RunError, StepUnknown, ApprovalPending, TeamFailed, TeamWaiting)


@dataclass(frozen=True)
class Ending:
    """The end an execution arrived at (or the wait it stopped in)."""

    status: RunStatus
    output: str | None = None
    reason: str | None = None
    error: dict[str, Any] | None = None
    waiting: dict[str, Any] | None = None  # ``run.waiting`` data: it waits, it did not end
    extra: dict[str, Any] = field(default_factory=dict)  # more ``run.finished`` data

    @classmethod
    def succeeded(cls, output: str | None, **extra: Any) -> Ending:
        """A run that reached its answer."""
        return cls("succeeded", output, extra=extra)

    @classmethod
    def cancelled(cls, run: RunRecord | None = None) -> Ending:
        """A run stopped because somebody asked (``run``: who and when, if it says)."""
        return cls("cancelled", reason=CANCELLED).asked_by(run)

    def asked_by(self, run: RunRecord | None) -> Ending:
        """This end naming who asked for ``run``'s cancellation (``by``) and when
        (``asked_at``), as the run's row records them."""
        if run is None or run.cancel_at is None:
            return self
        asked: dict[str, Any] = {"asked_at": run.cancel_at}
        if run.cancel_by is not None:
            asked["by"] = run.cancel_by
        return replace(self, extra={**self.extra, **asked})

    def end_data(self) -> dict[str, Any]:
        """The ``run.finished`` event's data."""
        data: dict[str, Any] = {"status": self.status, "output": self.output, "reason": self.reason}
        data.update(self.extra)
        if self.error is not None:
            data["error"] = self.error
        return data


def live_ending(
    exc: BaseException, *, run_id: str, deadline_s: float | None, cancel_requested: bool
) -> Ending:
    """The end of a live execution that ``exc`` stopped.

    Raises ``exc`` again when it must not end the run: the store failed (the run
    stays resumable), or the runtime is shutting down (a cancellation nobody
    requested).
    """
    if isinstance(exc, StepUnknown):
        reason = (
            f"step {exc.step} ({exc.tool}) may or may not have happened; decide with "
            f"`agentrt resolve {run_id} {exc.step} --rerun | --output TEXT | --fail`"
        )
        return Ending("waiting", reason=reason, waiting={"reason": reason})
    if isinstance(exc, ApprovalPending):
        calls = ", ".join(f"step {s} ({t})" for s, t in zip(exc.steps, exc.tools, strict=True))
        verb = "needs" if len(exc.steps) == 1 else "need"
        reason = (
            f"{calls} {verb} approval; decide with `agentrt approve {run_id} STEP` or "
            f"`agentrt deny {run_id} STEP --reason TEXT`"
        )
        return Ending(
            "waiting_approval", reason=reason, waiting={"reason": reason, "approval": exc.steps}
        )
    if isinstance(exc, TeamWaiting):
        waiting = {"reason": exc.reason, "waits_on": exc.children}
        return Ending("waiting", reason=exc.reason, waiting=waiting)
    if isinstance(exc, CancelRequested):
        return Ending.cancelled()
    if isinstance(exc, asyncio.CancelledError):
        if not cancel_requested:
            raise exc
        return Ending.cancelled()
    if isinstance(exc, TimeoutError):
        return Ending("timed_out", reason=f"budgets.deadline_s={deadline_s} exceeded")
    if isinstance(exc, TeamFailed):
        return Ending("failed", reason=exc.reason)
    if isinstance(exc, BudgetExhausted):
        return Ending("budget_exhausted", reason=exc.message, error=exc.to_dict())
    if isinstance(exc, StepTimeout):
        return Ending("timed_out", reason=exc.message, error=exc.to_dict())
    if isinstance(exc, RunError):
        return Ending("failed", reason=exc.message, error=exc.to_dict())
    if isinstance(exc, StoreError) or not isinstance(exc, Exception):
        raise exc
    # A bug in a hook or tool plumbing: record it, don't lose it.
    return Ending("failed", reason=f"{type(exc).__name__}: {exc}")


def replayed_status(exc: Exception, recorded: dict[str, Any], *, stopped: bool) -> RunStatus:
    """The status a replay arrived at, given what stopped it.

    ``stopped``: the run was recorded ending from outside its steps (a cancel, a
    deadline), so its steps may end anywhere. Raises ``exc`` again when the
    replay went where the log never went.
    """
    status: RunStatus = recorded["status"]
    if stopped and isinstance(exc, _STOPPED_FROM_OUTSIDE):
        return status
    if isinstance(exc, LogEnds):
        if status != "failed":
            raise exc
        return "failed"  # stopped inside this step, as recorded
    if isinstance(exc, NondeterminismError):
        raise exc
    if isinstance(exc, StepUnknown | TeamWaiting):
        return "waiting"
    if isinstance(exc, ApprovalPending):
        return "waiting_approval"
    if isinstance(exc, BudgetExhausted):
        return "budget_exhausted"
    if isinstance(exc, StepTimeout):
        return "timed_out"
    if isinstance(exc, RunError | TeamFailed):
        return "failed"
    if isinstance(exc, Exception) and f"{type(exc).__name__}: {exc}" == recorded.get("reason"):
        return "failed"  # a hook's own error, raised again from the same log
    raise exc
