"""What a run shows live but never records: its model's reply as it is written.

The log is the run; a step is recorded once, whole, when it ends. While the
model writes a reply, whoever listens to the run in this process (the server's
event stream, say) can see it piece by piece: :meth:`LiveStreams.listen` opens
a :class:`LiveFeed` of the run, and while one is open the run's model steps
executed here stream (see :mod:`agentrt.engine.gateway`), each piece going to
every feed of the run as a :class:`Delta`. With no feed open, a step asks the
model for a whole reply as before: :meth:`LiveStreams.listening` costs one
dict lookup.

Pieces are not recorded, so replay and resume never see them, and they reach
only the listeners in the process that executes the run. A step's pieces carry
an ``attempt`` number that grows when the step starts over (a retry, a
fallback model, a stream cut off): the pieces of the attempt before are not
part of its reply. Each also names the last event of the run durable when it
was made (``after``): a listener merging pieces with the log sends a piece
after that event and before the next one, which was written after it. A feed
that falls more than ``limit`` pieces behind loses the oldest
(:attr:`LiveFeed.dropped`); the recorded step is whole all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from agentrt.models.base import ModelDelta

__all__ = ["Delta", "LiveFeed", "LiveStreams", "StepSink"]

FEED_LIMIT = 10_000
"""Pieces a feed holds for a listener that does not keep up (then the oldest go)."""


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of a model step's reply, live: text, or fragments of its tool calls."""

    run_id: str
    step: int
    attempt: int  # 1 for the step's first attempt; larger when it started over
    model: str
    after: int  # the run's last durable event when the piece was made
    text: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The piece as JSON-ready data (a ``model.delta`` of the server's stream)."""
        data: dict[str, Any] = {"run": self.run_id, "step": self.step, "attempt": self.attempt,
                                "model": self.model, "after": self.after,
                                "text": self.text}  # fmt: skip
        if self.tool_calls:
            data["tool_calls"] = list(self.tool_calls)
        return data


class LiveFeed:
    """One listener's pieces of one run, in the order they were made."""

    def __init__(self, run_id: str, limit: int = FEED_LIMIT) -> None:
        """A feed of ``run_id`` on the running event loop, holding at most ``limit``."""
        self.run_id = run_id
        self.dropped = 0  # pieces lost because the listener fell behind
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._pending: deque[Delta] = deque()
        self._ready = asyncio.Event()

    def put(self, delta: Delta) -> None:
        """Hand the listener a piece (from any thread)."""
        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            here = False
        if here:
            self._add(delta)
        else:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody listens
                self._loop.call_soon_threadsafe(self._add, delta)

    def _add(self, delta: Delta) -> None:
        if len(self._pending) >= self._limit:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(delta)
        self._ready.set()

    def take(self) -> list[Delta]:
        """The pieces that came since the last take, oldest first."""
        taken = list(self._pending)
        self._pending.clear()
        self._ready.clear()
        return taken

    async def ready(self) -> None:
        """Return once there is a piece to take."""
        await self._ready.wait()


class LiveStreams:
    """The feeds open in this process, by run."""

    def __init__(self, limit: int = FEED_LIMIT) -> None:
        """No feeds yet; each holds at most ``limit`` pieces."""
        self._limit = limit
        self._feeds: dict[str, set[LiveFeed]] = {}

    def listening(self, run_id: str) -> bool:
        """Whether a feed of ``run_id`` is open here."""
        return run_id in self._feeds

    @contextlib.contextmanager
    def listen(self, run_id: str) -> Iterator[LiveFeed]:
        """Open a feed of ``run_id`` (on the running event loop); closed on exit.

        Model steps of the run that start while it is open stream their replies
        into it; one already under way when it opens is not shown.
        """
        feed = LiveFeed(run_id, self._limit)
        self._feeds.setdefault(run_id, set()).add(feed)
        try:
            yield feed
        finally:
            feeds = self._feeds.get(run_id)
            if feeds is not None:
                feeds.discard(feed)
                if not feeds:
                    del self._feeds[run_id]

    def sink(self, run_id: str, step: int, durable: Callable[[], int]) -> StepSink:
        """Where model step ``step`` of ``run_id`` sends its pieces (ask
        :meth:`listening` first: with nobody listening a step asks for a whole reply).
        ``durable`` tells the run's last durable event."""
        return StepSink(self, run_id, step, durable)

    def publish(self, delta: Delta) -> None:
        """Hand a piece to every feed of its run open now."""
        for feed in tuple(self._feeds.get(delta.run_id, ())):
            feed.put(delta)


class StepSink:
    """One model step's pieces, numbered by attempt across retries and fallbacks."""

    def __init__(
        self, streams: LiveStreams, run_id: str, step: int, durable: Callable[[], int]
    ) -> None:
        """The sink of ``step`` of ``run_id``, publishing to ``streams``; ``durable``
        tells the run's last durable event."""
        self._streams = streams
        self._durable = durable
        self.run_id = run_id
        self.step = step
        self.attempt = 0
        self._last: tuple[str, int, int] | None = None

    def receiver(self, model: str, attempt: int) -> Callable[[ModelDelta], None]:
        """What a streaming client calls with each piece of the step's ``attempt``
        (1-based) on ``model``."""

        def receive(delta: ModelDelta) -> None:
            key = (model, attempt, delta.attempt)
            if key != self._last:  # the step started over: a new attempt for listeners
                self._last = key
                self.attempt += 1
            self._streams.publish(
                Delta(self.run_id, self.step, self.attempt, model, self._durable(), delta.text,
                      delta.tool_calls)
            )  # fmt: skip

        return receive
