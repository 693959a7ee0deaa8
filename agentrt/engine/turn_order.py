"""The turns of a session, one at a time and in order, and what a new turn does to the
unfinished ones before it: its double-texting policy.

A query for a session that has an unfinished turn (queued, running, or waiting
for a person) becomes a turn under one of four policies, the query's own or
else its target's ``session.double_texting``:

- ``reject``: refused, nothing created. The store checks and gives the turn in
  one conditional write (:attr:`NewRun.if_session_idle`), so of two such
  queries racing on an idle session one gets the turn, the other the refusal.
- ``enqueue`` (the default): the turn waits until the earlier ones have ended,
  a person's decision included, then runs and sees them.
- ``interrupt``: the earlier unfinished turns are cancelled; what they recorded
  stays in the session's history (:mod:`agentrt.engine.sessions`), then the
  turn runs.
- ``rollback``: they are cancelled and leave the history, then the turn runs.

The policy is recorded in the turn's ``run.created`` event and applied by the
turn's execution, before its first step, on whichever worker takes it up: a
turn resumed elsewhere after a crash applies it again (a cancel asked twice
changes nothing). The earlier turns a turn cancels are those unfinished when
its execution starts, all of them numbered before it by the store; the two
never run at once, since a turn starts only once every earlier one has ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentrt.engine.plans import RunCreated
from agentrt.errors import StoreError
from agentrt.state.base import WAITING_STATUSES, Event, RunRecord

if TYPE_CHECKING:
    from agentrt.engine.worker import Worker

__all__ = ["UNFINISHED_STATUSES", "after_earlier_turns", "until_ended"]

UNFINISHED_STATUSES = ("queued", "running", "waiting", "waiting_approval")
"""Every status of a run that has not ended."""


async def after_earlier_turns(
    worker: Worker,
    run_id: str,
    session_id: str,
    known: tuple[RunRecord, list[Event]] | None,
    created: RunCreated | None,
) -> None:
    """Apply the turn's double-texting policy to the earlier unfinished turns of its
    session, then wait until they have ended (here or in another worker).

    ``interrupt`` and ``rollback`` cancel them newest first (so none starts in
    between), with the policy as the cancel's cause. ``known`` and ``created`` are
    the run, its log and its plan when the caller has them.
    """
    run = known[0] if known is not None else await worker.get(run_id)
    if not run.turn:
        return  # the session's first turn (turns count from 0)
    earlier = [
        r
        for r in await worker.store.list_runs(
            session_id=session_id, statuses=UNFINISHED_STATUSES, limit=run.turn
        )
        if r.turn is not None and r.turn < run.turn
    ]
    if not earlier:
        return
    if created is None:
        events = known[1] if known is not None else await worker.store.read_events(run_id)
        created = RunCreated.from_data(events[0].data)
    policy = created.double_texting
    if policy in ("interrupt", "rollback"):
        for turn in reversed(earlier):
            await worker.cancel(turn.id, cause=policy)
    for turn in earlier:
        await until_ended(worker, turn.id)


async def until_ended(worker: Worker, run_id: str) -> None:
    """Wait until the run has ended: through a person's decision if it waits for one,
    taking it up here if it is queued or stranded and nobody executes it."""
    async with worker.store.watch() as watch:
        while True:
            run = await worker.get(run_id)  # read after the watch opened: no write unheard
            if run.finished:
                return
            if run.status not in WAITING_STATUSES:
                await worker.adopt(run, queued=True)
                try:
                    await worker.wait(run_id)
                except StoreError:
                    raise  # this turn stops too, and is taken up again once the store answers
                except Exception:
                    # Its execution stopped on an error (a lost lease): it stays resumable,
                    # and is taken up here or elsewhere once its lease is free.
                    await worker.until_written(watch, await worker.get(run_id))
            elif run.cancel_requested and run.lease_owner is None:
                await worker.cancel(run_id)  # nobody ended it yet: its end is written here
            else:
                await worker.until_written(watch, run)  # a person decides
