"""The shared reader of a run's log behind its event streams, in one process over a real
store (SQLite, and PostgreSQL): many streams of one run each get every event after the
one they start from exactly once, in order, while the store is read once per write, not
once per write and stream; streams that join late, resume mid-way or leave early change
nothing for the others, and no reader is left once the last stream goes."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agentrt.engine import Runtime
from agentrt.server.event_routes import _stream
from agentrt.server.event_tail import RunTails
from agentrt.state import NewRun
from agentrt.state.records import EventDraft, RunUpdate
from tests import pg
from tests.store_calls import StoreCalls

STREAMS = 50
WRITES = 20


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tail.db'}"
        return
    pg.admin().close()  # a loud skip without PostgreSQL (a failure under CI=true)
    with pg.fresh_schema() as schema:
        yield pg.url_of(schema)


@pytest.fixture
async def rt(store_url: str) -> AsyncIterator[Runtime]:
    """A started runtime over the store (nothing executes: the test writes the log)."""
    async with Runtime(store_url, resume_interrupted=False) as runtime:
        yield runtime


class Log:
    """A run whose log the test writes itself, a few events at a time."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.run_id = f"run-{random.randrange(1 << 30)}"
        self.last = 0

    async def create(self) -> None:
        new = NewRun(self.run_id, "default", "bot", time.time())
        await self.rt.store.create_run(new, [EventDraft("run.created", {}, time.time())])
        self.last = 1

    async def write(self, count: int, *, finish: bool = False) -> None:
        drafts = [EventDraft("note", {"n": self.last + i + 1}, time.time()) for i in range(count)]
        update = None
        if finish:
            drafts.append(EventDraft("run.finished", {"status": "succeeded"}, time.time()))
            update = RunUpdate(status="succeeded")
        self.last = await self.rt.store.append_events(
            self.run_id, drafts, expected_seq=self.last, update=update
        )


async def follow(
    rt: Runtime, tails: RunTails, run_id: str, after: int, first: asyncio.Event | None = None
) -> list[int]:
    """The ids of the events one stream sends, starting after ``after``, to its end."""
    ids: list[int] = []
    async for chunk in _stream(rt, tails, run_id, after):
        ids += [int(line[4:]) for line in chunk.decode().splitlines() if line.startswith("id: ")]
        if first is not None:
            first.set()
    return ids


async def test_many_streams_share_one_read_per_write_and_each_get_the_whole_log(
    rt: Runtime,
) -> None:
    calls = StoreCalls(rt.store)
    tails = RunTails(lambda: calls)
    log = Log(rt)
    await log.create()
    started = [asyncio.Event() for _ in range(STREAMS)]
    streams = [asyncio.create_task(follow(rt, tails, log.run_id, 0, e)) for e in started]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)
    assert len(tails) == 1  # one reader for all of them
    caught_up = calls.counts["read_events"]
    assert caught_up == STREAMS  # each read what it missed itself, once
    for _ in range(WRITES):
        await log.write(2)
        await asyncio.sleep(0.01)
    await log.write(1, finish=True)
    got = await asyncio.wait_for(asyncio.gather(*streams), 30)
    assert all(ids == list(range(1, log.last + 1)) for ids in got), got
    # One read per write at most (the tail's), where every stream reading after every
    # write would have made STREAMS x WRITES of them.
    reads = calls.counts["read_events"] - caught_up
    assert 1 <= reads <= WRITES + 1, calls.counts
    assert calls.counts["get_run"] <= 2, calls.counts
    assert len(tails) == 0  # the last stream to go stopped the reader


async def test_streams_that_join_resume_or_leave_mid_run_miss_and_repeat_nothing(
    rt: Runtime,
) -> None:
    tails = RunTails(lambda: rt.store)
    log = Log(rt)
    await log.create()
    starts: list[int] = []
    streams: list[asyncio.Task[list[int]]] = []
    leaving: list[asyncio.Task[list[int]]] = []
    for _ in range(WRITES):
        # Some streams join at every point of the run, each after an event it names
        # (a reconnect's Last-Event-ID); some leave again at once.
        for after in (0, random.randint(0, log.last), log.last):
            starts.append(after)
            streams.append(asyncio.create_task(follow(rt, tails, log.run_id, after)))
        leaving.append(asyncio.create_task(follow(rt, tails, log.run_id, 0)))
        await log.write(random.randint(1, 3))
        await asyncio.sleep(random.choice((0, 0.005)))
        leaving[-1].cancel()
    await log.write(1, finish=True)
    got = await asyncio.wait_for(asyncio.gather(*streams), 30)
    for after, ids in zip(starts, got, strict=True):
        assert ids == list(range(after + 1, log.last + 1)), (after, ids)
    await asyncio.gather(*leaving, return_exceptions=True)
    assert len(tails) == 0
    # The run has ended: a stream of it now replays its log from the store and ends, and
    # one after its last event ends at once.
    assert await follow(rt, tails, log.run_id, 3) == list(range(4, log.last + 1))
    assert await follow(rt, tails, log.run_id, log.last) == []
    assert len(tails) == 0
