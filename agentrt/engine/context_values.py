"""The run context's time and new ids, recorded so that replay returns them again.

A hook, or the loop, that reads ``ctx.now()`` or makes ``ctx.new_id()`` gets a
value the first time from the clock or from randomness, and the journal
records it as a ``context.value`` event. Resume and replay return the recorded
value instead: a hook sees on replay exactly what it saw when the run was live.

A value is found again by where it was asked for: the step the caller was at,
and how many values that step had asked for before it. A value asked at a step
that is not performed again (its result is in the log) is not asked again, so
no later value moves. Code that asks for a different kind of value at the same
place, or a recorded value that no longer matches the check recorded with it
(the log was edited), raises :class:`~agentrt.errors.NondeterminismError`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any, Literal

from agentrt import _json
from agentrt.engine import events as ev
from agentrt.errors import NondeterminismError
from agentrt.state.base import Event

__all__ = ["ContextValues", "ValueKind", "fresh_id", "value_check"]

ValueKind = Literal["now", "id"]


def fresh_id() -> str:
    """A new random id: 16 hex digits."""
    return secrets.token_hex(8)


def value_check(step: int, n: int, kind: str, value: Any) -> str:
    """What a recorded value is checked against on replay (the run id is left out: an
    imported run has a new one)."""
    return hashlib.blake2b(_json.dumps([step, n, kind, value]), digest_size=6).hexdigest()


class ContextValues:
    """The values a run's log recorded, by (step, position in the step), and those asked."""

    def __init__(self, events: Sequence[Event]) -> None:
        self._recorded: dict[tuple[int, int], dict[str, Any]] = {
            (int(e.data.get("step", 0)), int(e.data.get("n", 0))): e.data
            for e in events
            if e.type == ev.CONTEXT_VALUE
        }
        self._asked: dict[int, int] = {}

    def next(self, kind: ValueKind, step: int) -> tuple[int, dict[str, Any] | None]:
        """The position of the value asked now at ``step``, and what the log has there.

        Raises:
            NondeterminismError: the log has another kind of value there, or one
                that does not match its check.
        """
        n = self._asked.get(step, 0)
        self._asked[step] = n + 1
        data = self._recorded.get((step, n))
        if data is None:
            return n, None
        where = f"step {step}: value {n + 1} asked at this step"
        if data.get("check") != value_check(step, n, str(data.get("kind")), data.get("value")):
            raise NondeterminismError(
                f"{where} does not match the check recorded with it (the log was changed)"
            )
        if data.get("kind") != kind:
            raise NondeterminismError(
                f"{where} is {kind!r}; the log recorded {data.get('kind')!r} there "
                "(the code asks for the run's time and ids in another order than it did)"
            )
        return n, data

    def record(self, kind: ValueKind, step: int, n: int, value: Any) -> dict[str, Any]:
        """The data of a new ``context.value`` event, remembered for the rest of this execution."""
        data = {"kind": kind, "value": value, "step": step, "n": n}
        data["check"] = value_check(step, n, kind, value)
        self._recorded[(step, n)] = data
        return data
