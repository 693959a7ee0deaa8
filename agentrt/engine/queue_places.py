"""Where a queued run stands: its place in its tenant's queue, how long it has
waited, and what holds it back (which limit), read as the scheduler would weigh
it now (``runs list``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentrt.engine.schedule_book import ScheduleBook
from agentrt.engine.scheduler import held_back
from agentrt.state.base import Store
from agentrt.state.records import RunRecord

__all__ = ["QueuePlace", "places_of"]

_DEEPEST = 1000  # places counted per tenant; a run further back has none


@dataclass(frozen=True, slots=True)
class QueuePlace:
    """A queued run's place (1: next of its tenant), wait, and what it waits for."""

    position: int | None
    waiting_s: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {"position": self.position, "waiting_s": self.waiting_s, "reason": self.reason}

    def line(self) -> str:
        """In a few words: ``#3 12s: agent bot is at its max_running=2``."""
        place = "-" if self.position is None else f"#{self.position}"
        return f"{place} {self.waiting_s:.0f}s: {self.reason}"


async def places_of(
    store: Store, runs: Sequence[RunRecord], *, now: float, book: ScheduleBook | None = None
) -> dict[str, QueuePlace]:
    """The place of each queued run of ``runs``, by id; the shares and limits from
    ``book`` (a worker's, read at most a second ago), else read now."""
    queued = [run for run in runs if run.status == "queued"]
    if not queued:
        return {}
    view = await store.queue_view(now=now, per_tenant=_DEEPEST)
    shares = await (book or ScheduleBook(store)).shares({run.namespace for run in queued})
    places = {}
    for run in queued:
        line = view.of(run.namespace)
        at = next((i for i, waiting in enumerate(line) if waiting.id == run.id), None)
        reason = None if at is None else held_back(line[at], view, shares)
        if reason is None:
            ahead = "first of its tenant" if at == 0 else "its tenant's runs before it"
            reason = f"a free worker slot ({ahead})"
        position = None if at is None else at + 1
        places[run.id] = QueuePlace(position, max(0.0, now - run.created_at), reason)
    return places
