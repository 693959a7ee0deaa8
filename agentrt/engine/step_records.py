"""What a run's log holds for each step: its intent, result, errors and decisions.

Pure functions over events, shared by the journal (which performs steps) and
those who only read a log (decisions, ``runs list``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agentrt.engine import events as ev
from agentrt.state.base import Event

__all__ = ["StepRecord", "add_event", "index_steps", "undecided_steps"]


@dataclass
class StepRecord:
    """The events recorded for one step (of each kind, the latest).

    ``attempts`` counts the step's intents: a tool step performed again after a
    crash or a ``rerun`` decision has one per attempt.
    """

    intent: Event | None = None
    result: Event | None = None
    errors: list[Event] = field(default_factory=list)
    unknown: Event | None = None
    decision: Event | None = None
    approval_requested: Event | None = None
    approval: Event | None = None
    checked: Event | None = None  # the answer's routing check (engine/model_routing.py)
    attempts: int = 0

    def open_decision(self) -> Event | None:
        """The person's decision not yet acted on: recorded after the latest attempt."""
        if self.decision is None or self.intent is None or self.decision.seq < self.intent.seq:
            return None
        return self.decision

    def open_unknown(self) -> Event | None:
        """The latest attempt's ``unknown`` mark, if that attempt was marked and not decided."""
        if self.unknown is None or self.intent is None or self.unknown.seq < self.intent.seq:
            return None
        if self.decision is not None and self.decision.seq > self.unknown.seq:
            return None
        return self.unknown


def index_steps(events: Sequence[Event]) -> dict[int, StepRecord]:
    """Group a run's step events by step number."""
    steps: dict[int, StepRecord] = {}
    for event in events:
        if event.step is not None:
            add_event(steps.setdefault(event.step, StepRecord()), event)
    return steps


def undecided_steps(events: Sequence[Event]) -> list[int]:
    """Tool steps whose outcome is unknown and waits for a person's decision."""
    return sorted(
        step
        for step, rec in index_steps(events).items()
        if rec.result is None and rec.open_unknown() is not None
    )


def add_event(rec: StepRecord, event: Event) -> None:
    """Fold ``event`` into the record of its step."""
    if event.type in (ev.MODEL_CALL, ev.TOOL_CALL):
        rec.intent = event
        rec.attempts += 1
    elif event.type in (ev.MODEL_RESULT, ev.TOOL_RESULT):
        rec.result = event
    elif event.type == ev.MODEL_ERROR:
        rec.errors.append(event)
    elif event.type == ev.TOOL_UNKNOWN:
        rec.unknown = event
    elif event.type == ev.TOOL_DECISION:
        rec.decision = event
    elif event.type == ev.APPROVAL_REQUESTED:
        rec.approval_requested = event
    elif event.type == ev.APPROVAL_DECIDED:
        rec.approval = event
    elif event.type == ev.MODEL_CHECKED:
        rec.checked = event
