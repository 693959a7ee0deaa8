"""Raising a run that stopped at its budgets: what is added, the conditional write
that reopens the run, and the budgets its later executions have.

A ``budget_exhausted`` run is ended, but it ended between two steps: nothing of
the step it could not afford was done. Reopening it appends a ``run.reopened``
event after its ``run.finished``, in one write conditional on the log not having
moved since it was read (so of two people raising it at once, one reopens it and
the other is told), and puts it back in the queue. Its executions from then on
read their budgets as the ones it was created with plus every addition in its
log, and count its deadline from the last reopening; a replay reads the same
log and arrives at the same end, the last one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from agentrt.engine import audit_trail
from agentrt.engine import events as ev
from agentrt.engine.gateway import check_budgets
from agentrt.engine.plans import RunCreated, RunSpec
from agentrt.errors import BudgetExhausted, ConflictError, LeaseLost, UsageError
from agentrt.spec.resources import Budgets
from agentrt.state.base import Event, EventDraft, RunRecord, RunUpdate, Store

__all__ = ["BudgetAddition", "reopen", "started_at", "with_additions"]

# What ``--add-budget`` names each field of a BudgetAddition.
_WORDS = {"tokens": "tokens", "cost": "cost_usd", "tool_calls": "tool_calls",
          "deadline": "deadline_s"}  # fmt: skip
# The Budgets limit each field raises.
_LIMITS = {"tokens": "max_tokens", "cost_usd": "max_cost_usd",
           "tool_calls": "max_tool_calls", "deadline_s": "deadline_s"}  # fmt: skip
_WHOLE = ("tokens", "tool_calls")


@dataclass(frozen=True)
class BudgetAddition:
    """What is added to a run's own limits: tokens, dollars, tool calls, seconds.

    A limit the run does not have (unlimited) stays unlimited.
    """

    tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: int = 0
    deadline_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> BudgetAddition:
        """``tokens=N,cost=USD,tool_calls=N,deadline=S`` (any of them, at least one).

        Raises:
            UsageError: a part is not ``name=number`` of a known name, or is negative.
        """
        given: dict[str, Any] = {}
        for part in (p.strip() for p in text.split(",")):
            word, eq, value = (x.strip() for x in part.partition("="))
            if not eq or word not in _WORDS:
                raise UsageError(
                    f"--add-budget: {part!r} is not one of "
                    f"{', '.join(n + '=...' for n in _WORDS)}; e.g. tokens=20000,cost=0.5"
                )
            whole = word in _WHOLE
            try:
                number = int(value) if whole else float(value)
            except ValueError:
                kind = "a whole number" if whole else "a number"
                raise UsageError(f"--add-budget: {word}={value!r} is not {kind}") from None
            if number < 0 or not math.isfinite(number):
                raise UsageError(f"--add-budget: {word} adds to a limit, so it is at least 0")
            given[_WORDS[word]] = number
        return cls(**given)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> BudgetAddition:
        """Inverse of :meth:`to_data` (a ``run.reopened`` event's ``added``)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def to_data(self) -> dict[str, Any]:
        """The fields that add something, as recorded in the log."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def __add__(self, other: BudgetAddition) -> BudgetAddition:
        return BudgetAddition(*(getattr(self, f.name) + getattr(other, f.name)
                                for f in fields(self)))  # fmt: skip

    def raised(self, budgets: Budgets) -> Budgets:
        """``budgets`` with each limit that is set raised by what is added to it."""
        update: dict[str, Any] = {}
        for name, limit in _LIMITS.items():
            current = getattr(budgets, limit)
            if current is not None and getattr(self, name):
                update[limit] = current + getattr(self, name)
        return budgets.model_copy(update=update) if update else budgets


def _added(events: Sequence[Event]) -> BudgetAddition:
    total = BudgetAddition()
    for event in events:
        if event.type == ev.RUN_REOPENED:
            total = total + BudgetAddition.from_data(event.data.get("added", {}))
    return total


def with_additions(created: RunCreated, events: Sequence[Event]) -> RunCreated:
    """The plan a run executes now: ``created`` with the additions its log records
    (agent runs: a team run is never reopened)."""
    added = _added(events)
    plan = created.plan
    if added == BudgetAddition() or not isinstance(plan, RunSpec):
        return created
    return replace(created, plan=plan.model_copy(update={"budgets": added.raised(plan.budgets)}))


def started_at(events: Sequence[Event]) -> float:
    """When the run's deadline counts from: its creation, or its last reopening."""
    for event in reversed(events):
        if event.type == ev.RUN_REOPENED:
            return event.ts
    return events[0].ts


async def reopen(
    store: Store, run: RunRecord, added: BudgetAddition, *, by: str | None, now: float
) -> RunRecord:
    """Put a ``budget_exhausted`` run back in the queue with ``added`` to its limits.

    Raises:
        ConflictError: the run did not stop at a budget, is a child or team run, or
            a turn of a session that went on after it; or it was written since
            ``run`` was read (someone else reopened it first).
    """
    _check_reopenable(run)
    events = await store.read_events(run.id)
    if "team" in events[0].data:
        raise ConflictError(
            f"run {run.id} is a team run: its stopped nodes are not taken up again; "
            "start it anew with higher budgets"
        )
    plan = with_additions(RunCreated.from_data(events[0].data), events).plan
    assert isinstance(plan, RunSpec)
    try:
        check_budgets(added.raised(plan.budgets), run.usage)
    except BudgetExhausted as exc:
        raise ConflictError(
            f"run {run.id} would stop again at once: {exc.message}; add to that limit with "
            "--add-budget tokens=N,cost=USD,tool_calls=N,deadline=S (the API: add_budget)"
        ) from None
    if run.session_id is not None:
        session = await store.get_session(run.session_id)
        if session is not None and run.turn is not None and session.next_turn > run.turn + 1:
            raise ConflictError(
                f"run {run.id} is turn {run.turn} of session {run.session_id}, which went on "
                "after it: its later turns were answered without it; start a new turn instead"
            )
    data: dict[str, Any] = {"added": added.to_data(), "was": run.reason}
    if by is not None:
        data["by"] = by
    event = EventDraft(ev.RUN_REOPENED, data, now, audit=audit_trail.reopened(data))
    try:
        await store.append_events(
            run.id, [event], expected_seq=run.last_seq, owner=None,
            update=RunUpdate(status="queued", reason=None),
        )  # fmt: skip
    except LeaseLost:
        raise ConflictError(
            f"run {run.id} was written while it was being raised (raised by someone else?); "
            f"see `agentrt runs show {run.id}`"
        ) from None
    reopened = await store.get_run(run.id)
    assert reopened is not None
    return reopened


def _check_reopenable(run: RunRecord) -> None:
    if run.status != "budget_exhausted":
        raise ConflictError(
            f"run {run.id} is {run.status}: only a run stopped budget_exhausted is raised "
            "with --add-budget"
        )
    if run.parent_run is not None:
        raise ConflictError(
            f"run {run.id} is a child run of {run.parent_run}, which has had its outcome: "
            "raise the parent's budgets instead"
        )
