"""One reader of a run's log per server process, shared by every stream of the run.

A stream that read the store itself after each write to its run made N reads
per write for N clients of one run, each waiting its turn on the store (on
SQLite, on the one thread the run's own writes go through). Here the first
stream of a run starts a :class:`RunTail`: it opens the store's watch, and
after each write to the run reads the new events once and hands the same list
to every :class:`Subscription` of the run in this process. The last stream to
leave stops it.

What a subscriber gets is still exactly the log, whatever the timing:

* it reads what it missed itself (its catch-up, from the event it starts
  after) only once the tail's watch is open, so an event written after that
  read reaches it through the tail;
* it drops events it already has (the tail may hand it some its catch-up read
  too) and reads the store itself when the tail hands it events that do not
  follow the last it has, so it never skips one.

The tail ends when it reads ``run.finished``, or when the run is gone or ended
with nothing new; a tail whose read fails hands the error to its subscribers
and is dropped, so the next stream starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from agentrt.engine.events import RUN_FINISHED
from agentrt.errors import NotFoundError
from agentrt.state.base import Event, Store

__all__ = ["RunTail", "RunTails", "Subscription"]


class Subscription:
    """One stream's share of a run's tail: the events after those it has."""

    def __init__(self, tail: RunTail) -> None:
        """A subscriber of ``tail``; it hands events with :meth:`_push`."""
        self._tail = tail
        self._batches: list[list[Event]] = []
        self._wake = asyncio.Event()
        self._caught_up = False  # the first call reads the store: the catch-up
        self._asked = False  # whether over() asked the store yet

    @property
    def run_id(self) -> str:
        """The run followed."""
        return self._tail.run_id

    def _push(self, events: list[Event]) -> None:
        self._batches.append(events)
        self._wake.set()

    def _end(self) -> None:
        self._wake.set()

    async def changed(self) -> None:
        """Return once the tail handed events, or ended."""
        if not self._tail.ended:
            await self._wake.wait()

    async def events_after(self, last: int) -> list[Event]:
        """The run's events after ``last`` (the last the stream sent), in order.

        From the tail when they follow ``last``; else (the first call, a gap, a
        tail that ended with nothing handed) read from the store; none if the run
        is gone. Raises the error the tail's read failed with.
        """
        tail = self._tail
        if tail.error is not None:
            raise tail.error
        self._wake.clear()
        batches, self._batches = self._batches, []
        fresh = [e for batch in batches for e in batch if e.seq > last]
        if self._caught_up and (fresh[0].seq == last + 1 if fresh else not tail.ended):
            return fresh
        self._caught_up = True
        try:
            return await tail.store.read_events(tail.run_id, after_seq=last)
        except NotFoundError:
            return []  # deleted: over() says so

    async def over(self, last: int) -> bool:
        """Whether nothing more can come after ``last``: the run is gone, or it ended
        at or before ``last``. Asks the store only on the first call and once the tail
        ended (otherwise the tail says when there is more)."""
        if self._asked and not self._tail.ended:
            return False
        self._asked = True
        run = await self._tail.store.get_run(self._tail.run_id)
        return run is None or (run.finished and run.last_seq <= last)


class RunTail:
    """The one reader of a run's log in this process while streams follow it."""

    def __init__(self, store: Store, run_id: str, on_end: Callable[[RunTail], None]) -> None:
        """A tail of ``run_id`` in ``store``; ``on_end`` is told when it stops reading."""
        self.store = store
        self.run_id = run_id
        self.ended = False  # it reads no more: the run finished, is gone, or a read failed
        self.error: BaseException | None = None
        self.subscribers: set[Subscription] = set()
        self._on_end = on_end
        self._open = asyncio.Event()
        self._task = asyncio.create_task(self._follow(), name=f"tail {run_id}")

    async def opened(self) -> None:
        """Return once the tail hears every write to the run (or has ended)."""
        await self._open.wait()
        if self.error is not None:
            raise self.error

    async def _follow(self) -> None:
        try:
            async with self.store.watch() as watch:
                run = await self.store.get_run(self.run_id)
                last = 0 if run is None else run.last_seq
                self._open.set()
                while run is not None:
                    await watch.changed({self.run_id})
                    events = await self.store.read_events(self.run_id, after_seq=last)
                    if events:
                        last = events[-1].seq
                        for subscriber in tuple(self.subscribers):
                            subscriber._push(events)
                        if events[-1].type == RUN_FINISHED:
                            break
                        continue
                    run = await self.store.get_run(self.run_id)
                    if run is not None and run.finished and run.last_seq <= last:
                        break
        except NotFoundError:
            pass  # the run was deleted: its streams end
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store failed: every stream of the run sees it
            self.error = exc
        self._stop()

    def _stop(self) -> None:
        self.ended = True
        self._open.set()
        self._on_end(self)
        for subscriber in tuple(self.subscribers):
            subscriber._end()

    async def close(self) -> None:
        """Stop reading (nobody follows the run any more)."""
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class RunTails:
    """The tails of this process, one per run that streams follow."""

    def __init__(self, store: Callable[[], Store]) -> None:
        """Tails reading the store that ``store`` gives (when the first starts)."""
        self._store = store
        self._tails: dict[str, RunTail] = {}

    def __len__(self) -> int:
        """How many runs have a tail now."""
        return len(self._tails)

    def _ended(self, tail: RunTail) -> None:
        if self._tails.get(tail.run_id) is tail:
            del self._tails[tail.run_id]  # the next stream of the run starts a new one

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: str) -> AsyncIterator[Subscription]:
        """Follow ``run_id``: a subscription to its tail (started if none runs),
        once the tail hears every write; left on exit."""
        tail = self._tails.get(run_id)
        if tail is None:
            tail = self._tails[run_id] = RunTail(self._store(), run_id, self._ended)
        subscription = Subscription(tail)
        tail.subscribers.add(subscription)
        try:
            await tail.opened()
            yield subscription
        finally:
            tail.subscribers.discard(subscription)
            if not tail.subscribers:
                self._ended(tail)
                await asyncio.shield(tail.close())
