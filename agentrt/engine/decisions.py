"""People's decisions on runs that wait for them: approve, deny, resolve.

Each decision is recorded once, as a compare-and-set on the log it was checked
against, together with the run going back to ``running`` under the deciding
worker's lease; only then does anything run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Literal

from agentrt.engine import events as ev
from agentrt.engine.audit_trail import decided
from agentrt.engine.holders import dead_holder
from agentrt.engine.journal import undecided_steps
from agentrt.engine.result import RunResult
from agentrt.engine.worker import Worker
from agentrt.errors import AgentrtError, CancelRequested, ConflictError, LeaseLost
from agentrt.state.base import Event, EventDraft, RunRecord, RunUpdate

__all__ = ["Decisions"]

# A decision checked against a log that moved before it was written is checked again
# against the new log, this many times at most.
_DECIDE_TRIES = 5

Check = Callable[[RunRecord, list[Event]], RunUpdate | None]


class Decisions:
    """Records people's decisions and continues the runs they unblock, on ``worker``."""

    def __init__(self, worker: Worker, clock: Callable[[], float]) -> None:
        self._worker = worker
        self._store = worker.store
        self._clock = clock

    async def resolve(
        self,
        run_id: str,
        step: int,
        action: Literal["rerun", "output", "fail"],
        *,
        output: str = "",
        by: str | None = None,
        wait: bool = True,
    ) -> RunResult:
        """Decide a tool step left ``unknown`` by a crash, then continue the run (and,
        with ``wait``, wait for it to end or wait again).

        ``rerun`` is consumed by one attempt: if the process dies during it, the
        step is ``unknown`` again, never performed a third time unasked. A run
        that waits for no such decision on ``step`` raises ``ConflictError``.
        """

        def check(run: RunRecord, events: list[Event]) -> RunUpdate | None:
            if run.status != "waiting":
                raise ConflictError(_not_waiting(run, "for a decision on a step"))
            undecided = undecided_steps(events)
            if step not in undecided:
                raise ConflictError(
                    f"step {step} of run {run_id} is not undecided; undecided: {undecided}"
                )
            return RunUpdate(status="running")

        data: dict[str, Any] = {"action": action}
        if action != "rerun":
            data["output"] = output
        if by:
            data["by"] = by
        run, _ = await self._decide(run_id, ev.TOOL_DECISION, data, step, check)
        self._worker.spawn(run_id, session_id=run.session_id)
        return await self._after(run_id, wait)

    async def approve(
        self,
        run_id: str,
        step: int,
        *,
        approved: bool = True,
        reason: str | None = None,
        by: str | None = None,
        wait: bool = True,
    ) -> RunResult:
        """Approve (or deny) a tool call a run waits on; the run continues once all are
        decided (with ``wait``, this waits for it to end or wait again). A denial
        reaches the model as the tool's error, with ``reason``; the last decision puts
        the run back to ``running`` in the same write. A run whose ``step`` does not
        wait for approval raises ``ConflictError``."""

        def check(run: RunRecord, events: list[Event]) -> RunUpdate | None:
            if run.status != "waiting_approval":
                raise ConflictError(_not_waiting(run, "for approval"))
            requested = {e.step for e in events if e.type == ev.APPROVAL_REQUESTED}
            decided = {e.step for e in events if e.type == ev.APPROVAL_DECIDED}
            undecided = sorted(s for s in requested - decided if s is not None)
            if step not in undecided:
                raise ConflictError(
                    f"step {step} of run {run_id} does not wait for approval; waiting: {undecided}"
                )
            # Others still wait: the run stays where it is.
            return RunUpdate(status="running") if len(undecided) == 1 else None

        data: dict[str, Any] = {"approved": approved}
        if reason:
            data["reason"] = reason
        if by:
            data["by"] = by
        run, update = await self._decide(run_id, ev.APPROVAL_DECIDED, data, step, check)
        if update is None:
            await self._store.release_lease(run_id, self._worker.owner)
            return await self._worker.result_of(await self._worker.get(run_id))
        self._worker.spawn(run_id, session_id=run.session_id)
        return await self._after(run_id, wait)

    async def _after(self, run_id: str, wait: bool) -> RunResult:
        """The run a decision continued: once it ends or waits again, or as it is now."""
        if wait:
            return await self._worker.wait(run_id)
        return await self._worker.result_of(await self._worker.get(run_id))

    async def _decide(
        self, run_id: str, type: str, data: dict[str, Any], step: int, check: Check
    ) -> tuple[RunRecord, RunUpdate | None]:
        """Record a person's decision on a run that waits, holding its lease.

        ``check`` validates the decision against the run and its log (raising
        ``ConflictError``) and says how the run row changes with it. The append is
        conditional on the log being the one checked: when another process wrote
        meanwhile (a second decision, a resume), the decision is checked again on
        what the log holds now, so two decisions never both take effect. Returns
        the run as checked and the update; the lease stays held.
        """
        worker, store = self._worker, self._store
        for _ in range(_DECIDE_TRIES):
            run = await worker.get(run_id)
            events = await store.read_events(run_id)
            check(run, events)  # clear errors before any lease is taken
            leased = await store.acquire_lease(
                run_id, worker.owner, worker.lease_ttl_s, now=self._clock(),
                replacing=dead_holder(run),
            )  # fmt: skip
            if leased is None:
                holder = (await worker.get(run_id)).lease_owner
                raise ConflictError(
                    f"run {run_id} is being executed by {holder}; decide when it waits again"
                )
            seq = events[-1].seq if events else 0
            try:
                if leased.last_seq == seq:
                    update = check(leased, events)
                    audit = decided(type, step, data)
                    await store.append_events(
                        run_id,
                        [EventDraft(type, data, self._clock(), step, audit)],
                        expected_seq=seq,
                        owner=worker.owner,
                        update=update,
                    )
                    return leased, update
            except LeaseLost:
                pass  # the log moved since it was read: check again
            except CancelRequested:
                # Holding the lease, end it as its canceller asked.
                with contextlib.suppress(AgentrtError):
                    await worker.executor.finish_cancelled(leased)
                await store.release_lease(run_id, worker.owner)
                raise ConflictError(
                    f"run {run_id} was cancelled; the decision was not recorded"
                ) from None
            except BaseException:
                await store.release_lease(run_id, worker.owner)
                raise
            await store.release_lease(run_id, worker.owner)
        raise ConflictError(f"run {run_id} kept changing while deciding step {step}; try again")


def _not_waiting(run: RunRecord, what: str) -> str:
    """Why a decision does not apply to ``run`` now, and what to do instead."""
    message = f"run {run.id} is {run.status}, not waiting {what}"
    if run.status == "running" and dead_holder(run) is not None:
        message += f"; its last process stopped: continue it with `agentrt resume {run.id}`"
    return message
