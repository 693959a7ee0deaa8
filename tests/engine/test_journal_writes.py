"""A journal write whose sender is cancelled is still seen through: the store commits
it, and the journal learns so before writing anything else, so the run can go on
recording (its end, above all) instead of being left without one."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
from pathlib import Path

import pytest

from agentrt.engine.journal import Journal
from agentrt.errors import StoreError
from agentrt.state import NewRun, RunUpdate, SqliteStore


async def _leased_run(store: SqliteStore) -> str:
    now = time.time()
    run, _ = await store.create_run(
        NewRun("run_journal_writes", "default", "bot", now, lease_owner="w", lease_expires=now + 60)
    )
    return run.id


async def test_a_write_cancelled_in_flight_is_taken_in_before_the_next(tmp_path: Path) -> None:
    db = tmp_path / "agentrt.db"
    store = await SqliteStore.open(db)
    try:
        run_id = await _leased_run(store)
        run = await store.get_run(run_id)
        assert run is not None
        seen: list[int] = []
        journal = Journal(
            store, run_id, await store.read_events(run_id), owner="w", clock=time.time,
            token=run.lease_token, observers=[lambda _run, event: seen.append(event.seq)],
        )  # fmt: skip
        # Another connection holds the database's write lock: the journal's write waits.
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        node = asyncio.create_task(journal.append("node.started", {"node": "a"}))
        await asyncio.sleep(0.2)
        node.cancel()  # the task is stopped (a deadline); its write is in flight
        with pytest.raises(asyncio.CancelledError):
            await node
        blocker.execute("COMMIT")
        blocker.close()
        # The run records its end: the cancelled write went first, and committed.
        await journal.append(
            "run.finished", {"status": "timed_out"}, update=RunUpdate(status="timed_out")
        )
        events = await store.read_events(run_id)
        stored = await store.get_run(run_id)
    finally:
        await store.close()
    assert [e.type for e in events] == ["node.started", "run.finished"]
    assert [e.seq for e in events] == [1, 2] and journal.last_seq == 2
    assert seen == [1, 2]  # observers were told of both, in order
    assert stored is not None and stored.status == "timed_out"


async def test_a_write_that_failed_after_its_sender_was_cancelled_stops_the_journal(
    tmp_path: Path,
) -> None:
    db = tmp_path / "agentrt.db"
    store = await SqliteStore.open(db, busy_timeout_s=0.3)
    try:
        run_id = await _leased_run(store)
        journal = Journal(
            store, run_id, await store.read_events(run_id), owner="w", clock=time.time, token=1
        )
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # held past the store's busy timeout
        node = asyncio.create_task(journal.append("node.started", {"node": "a"}))
        await asyncio.sleep(0.05)
        node.cancel()
        with pytest.raises(asyncio.CancelledError):
            await node
        await asyncio.sleep(0.5)
        blocker.execute("COMMIT")
        blocker.close()
        # The write failed: what it carried is lost to this journal, which says so
        # rather than write the run's end after a hole.
        with pytest.raises(StoreError):
            await journal.append("run.finished", {"status": "timed_out"})
        events = await store.read_events(run_id)
    finally:
        await store.close()
    assert events == []


async def test_a_failed_write_nobody_takes_in_is_no_unretrieved_error(tmp_path: Path) -> None:
    """An execution stopped while its write was in flight, and never writes again (its
    lease was lost, the worker drained): the write's failure is no error to report."""
    db = tmp_path / "agentrt.db"
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    store = await SqliteStore.open(db, busy_timeout_s=0.3)
    try:
        run_id = await _leased_run(store)
        journal = Journal(
            store, run_id, await store.read_events(run_id), owner="w", clock=time.time, token=1
        )
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # held past the store's busy timeout
        node = asyncio.create_task(journal.append("node.started", {"node": "a"}))
        await asyncio.sleep(0.05)
        node.cancel()
        with pytest.raises(asyncio.CancelledError):
            await node
        await asyncio.sleep(0.5)
        blocker.execute("COMMIT")
        blocker.close()
        del journal, node
    finally:
        await store.close()
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert [c.get("message") for c in reported] == []
