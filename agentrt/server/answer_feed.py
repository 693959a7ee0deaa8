"""A run's answer as it comes, for the endpoints that speak in answers rather than
events (``/v1/chat/completions``): pieces of text, then how the run ended.

The feed follows the run's durable event log through the store's watch, so it
works for a run executing in this process or on any other worker, and for a
run that ended before the request (the same ``Idempotency-Key`` sent again).
Today the answer arrives whole, as the run's ``run.finished`` output, in one
:class:`Piece` before :class:`Ended`. A source of token deltas (the run's live
stream) can yield its deltas as pieces before the end (through
:meth:`AnswerText.piece`); the last piece is then only what they did not say
(:meth:`AnswerText.rest`), so the text a client reads always ends with the
run's whole answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from agentrt.engine import RunResult, RunView
from agentrt.errors import NotFoundError
from agentrt.state.base import Store
from agentrt.state.records import TERMINAL_STATUSES, WAITING_STATUSES, Event, RunRecord

__all__ = ["AnswerText", "Ended", "Idle", "Item", "Piece", "follow_answer"]


@dataclass(frozen=True, slots=True)
class Piece:
    """Text of the answer, in order."""

    text: str


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing happened for a while: time for a keep-alive."""


@dataclass(frozen=True, slots=True)
class Ended:
    """The run ended, or waits for a person, or the caller's wait ran out (``run``
    still going); ``result`` is its outcome so far, with its usage."""

    run: RunRecord
    result: RunResult
    unfinished: bool = False


Item = Piece | Idle | Ended


async def follow_answer(
    store: Store, run_id: str, *, idle_s: float, limit_s: float
) -> AsyncGenerator[Item, None]:
    """The answer of run ``run_id`` as it is recorded, ending with :class:`Ended`.

    Yields :class:`Idle` after ``idle_s`` seconds without a write to the run,
    and ends (``unfinished``) once ``limit_s`` seconds have passed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    events: list[Event] = []
    answer = AnswerText()
    async with store.watch() as watch:
        while True:
            # The row first: every event of the end it shows is in the read after it.
            run = await store.get_run(run_id)
            if run is None:
                raise NotFoundError(f"run {run_id} is gone")  # deleted by gc meanwhile
            events.extend(await store.read_events(run_id, after_seq=_last(events)))
            if run.status in TERMINAL_STATUSES or run.status in WAITING_STATUSES:
                result = RunView.of(run, events).result()
                ok = run.status == "succeeded"
                rest = answer.rest(result.output or "") if ok else ""
                if rest:
                    yield Piece(answer.piece(rest))
                yield Ended(run, result)
                return
            left = deadline - loop.time()
            if left <= 0:
                yield Ended(run, RunView.of(run, events).result(), unfinished=True)
                return
            if not await watch.changed({run_id}, timeout=min(idle_s, left)):
                yield Idle()


def _last(events: list[Event]) -> int:
    return events[-1].seq if events else 0


@dataclass
class AnswerText:
    """What of the answer a client has been sent, so the end sends only the rest."""

    sent: str = ""

    def piece(self, text: str) -> str:
        """Send ``text`` as the next part of the answer."""
        self.sent += text
        return text

    def rest(self, output: str) -> str:
        """What to send once the run answered ``output``: the part not sent yet when
        the pieces were its start, else (the pieces were a step before the answer,
        e.g. text beside tool calls) the whole answer after a blank line."""
        if output.startswith(self.sent):
            return output[len(self.sent) :]
        return "\n\n" + output if output else ""
