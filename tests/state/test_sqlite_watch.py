"""The SQLite store's watch across processes: a write in another process wakes a watch
here at once (inotify), and while nothing is written a watch reads nothing."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from agentrt.state import EventDraft, NewRun, SqliteStore
from agentrt.state import _sqlite_watch as notify

ROOT = Path(__file__).resolve().parents[2]

# Another process: opens the store, says so, and appends to run r on each line it reads.
WRITER = r"""
import asyncio, sys
from agentrt.state import EventDraft, SqliteStore

async def main():
    store = await SqliteStore.open(sys.argv[1])
    print("ready", flush=True)
    seq = (await store.get_run("r")).last_seq
    for line in sys.stdin:
        seq = await store.append_events("r", [EventDraft("note", {"n": seq}, 1.0)], expected_seq=seq)
        print("appended", flush=True)
    await store.close()

asyncio.run(main())
"""


def draft(run_id: str) -> NewRun:
    return NewRun(id=run_id, namespace="default", agent="helper", created_at=1.0)


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), 30.0)).decode().strip()


async def test_a_write_in_another_process_wakes_a_watch_here_at_once(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = await SqliteStore.open(path)
    await store.create_run(draft("r"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert await _line(proc) == "ready"
        async with store.watch() as watch:
            assert store._foreign is not None and store._foreign.kind == "inotify"
            assert await watch.changed({"r"}, timeout=0.2) == set()
            for _ in range(3):
                waiter = asyncio.create_task(watch.changed({"r"}, timeout=10.0))
                await asyncio.sleep(0.05)
                assert proc.stdin is not None
                started = time.monotonic()
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
                assert await asyncio.wait_for(waiter, 10.0) == {"r"}
                woke = time.monotonic() - started
                assert await _line(proc) == "appended"
                # The other process's append itself takes a few ms; a poll would take 500.
                assert woke < 0.3, f"woke after {woke:.3f}s"
        assert (await store.get_run("r")) is not None
        assert (await store.get_run("r")).last_seq == 3  # type: ignore[union-attr]
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # it ends
        await asyncio.wait_for(proc.communicate(), 30.0)
        await store.close()


async def test_while_nothing_is_written_a_watch_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    store = await SqliteStore.open(path)
    peer = await SqliteStore.open(path)  # another store, open and idle, on the same file
    try:
        await store.create_run(draft("r"))
        await store.create_run(draft("other"))
        async with store.watch() as watch:
            jobs = store._writer.jobs
            assert await watch.changed({"r"}, timeout=1.0) == set()
            assert store._writer.jobs == jobs, "no read while nothing is written"
            # This store's own writes to other runs wake nothing and read nothing more.
            waiter = asyncio.create_task(watch.changed({"r"}, timeout=0.5))
            await store.append_events("other", [EventDraft("e", {}, 1.0)], expected_seq=0)
            assert await waiter == set()
            assert store._writer.jobs == jobs + 1, "only the append itself"
            assert peer._writer.jobs > 0
    finally:
        await peer.close()
        await store.close()


async def test_a_cancelled_writers_commit_still_wakes_the_watch(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "c.db") as store:
        await store.create_run(draft("r"))
        async with store.watch() as watch:
            write = asyncio.create_task(
                store.append_events("r", [EventDraft("e", {}, 1.0)], expected_seq=0)
            )
            await asyncio.sleep(0)  # queued on the store's thread
            write.cancel()
            assert await watch.changed({"r"}, timeout=5.0) == {"r"}
        run = await store.get_run("r")
        assert run is not None and run.last_seq == 1, "the write was committed"


async def test_without_inotify_a_watch_looks_twice_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a system without inotify (another OS, no instance left).
    monkeypatch.setattr(notify, "_open_inotify", lambda folder: None)
    path = tmp_path / "p.db"
    store = await SqliteStore.open(path)
    peer = await SqliteStore.open(path)
    try:
        await store.create_run(draft("r"))
        async with store.watch() as watch:
            assert store._foreign is not None and store._foreign.kind == "poll"
            jobs = store._writer.jobs
            assert await watch.changed({"r"}, timeout=1.2) == set()
            assert store._writer.jobs == jobs, "looking at the folder reads no store"
            started = time.monotonic()
            await peer.append_events("r", [EventDraft("e", {}, 1.0)], expected_seq=0)
            assert await watch.changed({"r"}, timeout=5.0) == {"r"}
            assert time.monotonic() - started < notify.POLL_INTERVAL_S * 3
    finally:
        await peer.close()
        await store.close()


async def test_the_notify_folder_lives_while_a_store_is_open(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    folder = notify.notify_folder(path)
    first = await SqliteStore.open(path)
    second = await SqliteStore.open(path)
    assert len(list(folder.iterdir())) == 2, "a file per open store"
    await first.close()
    assert len(list(folder.iterdir())) == 1
    await second.close()
    assert not folder.exists(), "the last to close takes the folder"
    async with await SqliteStore.open(path, read_only=True) as reader, reader.watch() as watch:
        assert await watch.changed({"r"}, timeout=0.05) == set()
    assert not folder.exists(), "a reader leaves nothing behind"
