"""A team run's shared state: every write recorded, folded by reducers in graph order.

The state is never updated in place. Each node's result is a recorded write
``(key, value)`` stamped with its position: the round it ran in, the node's
place in the graph, and the map item. The value of a key is its reducer
applied to its writes *sorted by that position*, so parallel branches that
end in any order, a resumed run, and a replay all see the same state. A key
with ``rounds: latest`` folds each writer's latest round only: a node that a
loop runs again replaces what it wrote before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentrt.spec.resources import StateKey

__all__ = ["StateWrite", "fold_state"]


@dataclass(frozen=True, slots=True)
class StateWrite:
    """One write to a state key, with the position that orders it."""

    key: str
    value: Any
    round: int
    order: int  # the node's place in the graph
    item: int = 0  # the map item, else 0

    @property
    def position(self) -> tuple[int, int, int]:
        """What orders writes: round, then node order, then item."""
        return (self.round, self.order, self.item)


def _reduce(reducer: str, values: list[Any]) -> Any:
    if reducer == "append":
        out: list[Any] = []
        for value in values:
            out.append(value)
        return out
    if reducer == "merge":
        merged: dict[str, Any] = {}
        for value in values:
            if isinstance(value, Mapping):
                merged.update(value)
            else:  # a plain value merges in under its own text, never silently lost
                merged[str(value)] = value
        return merged
    return values[-1]


def fold_state(keys: Mapping[str, StateKey], writes: Iterable[StateWrite]) -> dict[str, Any]:
    """The state after ``writes``: each key's reducer over its writes in graph order.

    Keys without writes are absent (templates render them empty).
    """
    by_key: dict[str, list[StateWrite]] = {}
    for write in writes:
        by_key.setdefault(write.key, []).append(write)
    state: dict[str, Any] = {}
    for key, items in by_key.items():
        spec = keys.get(key, _LAST)
        if spec.rounds == "latest":
            items = _latest_rounds(items)
        items.sort(key=lambda w: w.position)
        state[key] = _reduce(spec.reducer, [w.value for w in items])
    return state


_LAST = StateKey()


def _latest_rounds(writes: list[StateWrite]) -> list[StateWrite]:
    """Each writer's writes of its latest round: a node run again replaces its earlier ones."""
    latest: dict[int, int] = {}
    for w in writes:
        latest[w.order] = max(latest.get(w.order, 0), w.round)
    return [w for w in writes if w.round == latest[w.order]]
