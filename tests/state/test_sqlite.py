"""What only the SQLite store has (schema, pragmas, URLs, crash safety under SIGKILL,
storage growth); the conformance suite runs on it in tests/state/test_conformance.py."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import agentrt.state as state_pkg
from agentrt._json import dumps
from agentrt.errors import StoreInvalid, StoreUnavailable, UsageError
from agentrt.state import (
    EventDraft,
    NewRun,
    RunUpdate,
    SessionRecord,
    SqliteStore,
    default_store_path,
    open_store,
)
from agentrt.state._run_query import count_sql, list_sql
from agentrt.state._sqlite_schema import APPLICATION_ID
from agentrt.state.sqlite import MIGRATIONS
from tests.state.run_listings import counts, listings


async def _one(store: SqliteStore, sql: str) -> Any:
    rows = await store._query(sql)
    return rows[0][0]


def run_draft(run_id: str, created_at: float = 100.0, **kw: Any) -> NewRun:
    return NewRun(id=run_id, namespace="default", agent="helper", created_at=created_at, **kw)


# --- schema and configuration ---------------------------------------------------


def test_migrations_are_numbered_in_order() -> None:
    versions = [m.number for m in MIGRATIONS]
    # From 1, each once (a number handed to a change not landed yet may be missing).
    assert versions[0] == 1 and versions == sorted(set(versions))
    assert all(m.script.strip() for m in MIGRATIONS)


async def test_schema_version_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    for _ in range(2):
        async with await SqliteStore.open(path) as store:
            rows = await store._query("SELECT version FROM schema_version ORDER BY version")
            assert [v for (v,) in rows] == [m.number for m in MIGRATIONS]
            tables = {
                name
                for (name,) in await store._query(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            assert {"schema_version", "resources", "sessions", "runs", "events", "blobs"} <= tables


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await SqliteStore.open(path)
    await store.create_run(run_draft("r"))
    await store.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 0)")
    with pytest.raises(UsageError, match="schema version 999"):
        await SqliteStore.open(path)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,), "left untouched"


async def test_pragmas(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "n.db") as store:
        assert await _one(store, "PRAGMA journal_mode") == "wal"
        assert await _one(store, "PRAGMA synchronous") == 1  # NORMAL
        assert await _one(store, "PRAGMA auto_vacuum") == 2  # INCREMENTAL
        assert await _one(store, "PRAGMA foreign_keys") == 1
        assert await _one(store, "PRAGMA busy_timeout") > 0
    async with await SqliteStore.open(tmp_path / "f.db", durability="full") as store:
        assert await _one(store, "PRAGMA synchronous") == 2  # FULL
    with pytest.raises(UsageError, match="durability"):
        await SqliteStore.open(tmp_path / "x.db", durability="sometimes")  # type: ignore[arg-type]


async def test_query_plans_use_indexes(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "p.db") as store:

        async def plan(sql: str) -> str:
            return " | ".join(row[-1] for row in await store._query("EXPLAIN QUERY PLAN " + sql))

        from agentrt.state import _sqlite_ops as mod

        assert "runs_claimable" in await plan(mod._CLAIMABLE.replace("?", "0"))
        assert "runs_session_turn" in await plan(
            "SELECT id FROM runs WHERE session_id = 's' ORDER BY turn"
        )
        assert "runs_finished" in await plan("SELECT pk, id FROM runs WHERE finished_at < 5")
        assert "runs_parent" in await plan(
            "SELECT id FROM runs WHERE parent_run = 'p' ORDER BY created_at DESC, pk DESC LIMIT 9"
        )
        assert "events_blob" in await plan(
            "SELECT 1 FROM blobs WHERE NOT EXISTS "
            "(SELECT 1 FROM events WHERE events.blob = blobs.hash)"
        )
        assert "PRIMARY KEY" in await plan(mod._SELECT_EVENTS.replace("?", "1"))
        # The scheduler's read: seeks in the queue's index, and the running runs alone.
        from agentrt.state import _queue_sql as queue

        for sql in (queue.FIRST_CLASS, queue.NEXT_CLASS_OF_TENANT, queue.NEXT_TENANT):
            assert "runs_queue" in await plan(sql.replace("?", "'t'", 1).replace("?", "0"))
        head = await plan(queue.CLASS_HEAD.replace("?", "'t'", 1).replace("?", "0"))
        assert "SEARCH runs USING INDEX runs_queue (namespace=? AND priority=?)" in head
        assert "runs_running" in await plan(queue.RUNNING.replace("?", "0"))


async def test_every_run_listing_filter_is_served_by_an_index(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "l.db") as store:
        cursor = (5.0, "run_x")
        for where, index in listings(cursor):
            query = list_sql(where, 50, "sqlite")
            assert query is not None
            rows = await store._query("EXPLAIN QUERY PLAN " + query[0], query[1])
            plan = " | ".join(row[-1] for row in rows)
            assert re.search(rf"INDEX ({index})\b", plan), (where, plan)
            # Sorted by the index itself, but a session's few turns or a merge of statuses.
            sorts = where.session_id is not None or len(where.statuses or ()) > 1
            assert sorts or "TEMP B-TREE" not in plan, (where, plan)
        for where, index in counts():
            query = count_sql(where, "sqlite")
            assert query is not None
            rows = await store._query("EXPLAIN QUERY PLAN " + query[0], query[1])
            plan = " | ".join(row[-1] for row in rows)
            assert re.search(rf"INDEX ({index})\b", plan), (where, plan)


async def test_event_rows_are_compact(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "c.db", inline_limit=100) as store:
        large = {"text": "q" * 500}
        await store.create_run(
            run_draft("r"), [EventDraft("small", {"a": 1}, 1.0), EventDraft("large", large, 2.0)]
        )
        rows = await store._query("SELECT seq, data, blob FROM events ORDER BY seq")
        assert rows[0] == (1, b'{"a":1}', None)
        digest = hashlib.sha256(dumps(large)).digest()
        assert rows[1] == (2, None, digest)
        assert await store._query("SELECT hash, data FROM blobs") == [(digest, dumps(large))]


async def test_persistence_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "p.db"
    big = {"doc": "d" * 5000}
    async with await SqliteStore.open(path) as store:
        res = await store.put_resource("Agent", "default", "a", {"spec": {"x": 1}}, now=1.0)
        session = await store.create_session(
            SessionRecord(id="s", namespace="default", created_at=1.0)
        )
        await store.create_run(run_draft("r", session_id="s"), [EventDraft("big", big, 2.0)])
        await store.acquire_lease("r", "A", 30.0, now=3.0)
        await store.append_events(
            "r", [EventDraft("e", {"k": "v"}, 4.0, step=1)], expected_seq=1, owner="A"
        )
        run = await store.get_run("r")
        events = await store.read_events("r")
    assert path.exists()
    async with await SqliteStore.open(path) as store:
        assert await store.get_resource("Agent", "default", "a") == res
        assert session.next_turn == 0
        assert await store.get_session("s") == SessionRecord(
            id="s", namespace="default", created_at=1.0, next_turn=1
        )
        assert await store.get_run("r") == run
        assert await store.read_events("r") == events
        assert await store.append_events("r", [], expected_seq=2, owner="A") == 2


async def test_urls_and_memory(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    async with SqliteStore.from_url(f"sqlite://{path.as_posix()}?durability=full") as store:
        assert store.durability == "full"
        await store.create_run(run_draft("r"))
    store = await SqliteStore.from_url(f"sqlite://{path.as_posix()}")
    try:
        assert await store.get_run("r") is not None
    finally:
        await store.close()

    async with SqliteStore.from_url("sqlite:///:memory:") as mem:
        await mem.create_run(run_draft("m"), [EventDraft("e", {"x": "y" * 4000}, 1.0)])
        assert (await mem.read_events("m"))[0].data == {"x": "y" * 4000}

    for bad in ("sqlite://relative.db", f"sqlite://{path.as_posix()}?color=red", "mysql://x"):
        with pytest.raises(UsageError):
            SqliteStore.from_url(bad)


async def test_open_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = tmp_path / "data" / "agentrt.db"
    monkeypatch.setattr(state_pkg, "default_store_path", lambda: default)
    for url in (None, f"sqlite://{(tmp_path / 'a.db').as_posix()}", str(tmp_path / "b.db")):
        store = await open_store(url)
        try:
            assert isinstance(store, SqliteStore)
            await store.create_run(run_draft("r"))
        finally:
            await store.close()
    assert default.exists()
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()
    with pytest.raises(UsageError, match="unsupported"):
        await open_store("redis://localhost")


def test_default_store_path() -> None:
    path = default_store_path()
    assert path.name == "agentrt.db"
    assert "agentrt" in path.parent.as_posix()


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "c.db")
    await store.close()
    with pytest.raises(UsageError, match="closed"):
        await store.get_run("r")
    await store.close()


async def test_group_commit_batches_concurrent_writes(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "g.db") as store:
        for i in range(50):
            await store.create_run(run_draft(f"r{i}"))
        before = store._writer.commits

        async def writer(i: int) -> None:
            seq = 0
            for n in range(4):
                seq = await store.append_events(
                    f"r{i}", [EventDraft("e", {"n": n}, 1.0)], expected_seq=seq
                )

        await asyncio.gather(*(writer(i) for i in range(50)))
        commits = store._writer.commits - before
        assert 1 <= commits < 100, "200 concurrent appends share commits"


async def test_cancelled_caller_leaves_store_consistent(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "x.db") as store:
        await store.create_run(run_draft("r"))
        task = asyncio.create_task(
            store.append_events("r", [EventDraft("e", {}, 1.0)], expected_seq=0)
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        run = await store.get_run("r")
        assert run is not None and run.last_seq in (0, 1)
        assert len(await store.read_events("r")) == run.last_seq
        seq = await store.append_events("r", [EventDraft("e", {}, 2.0)], expected_seq=run.last_seq)
        assert seq == run.last_seq + 1


# --- storage growth ----------------------------------------------------------------


async def test_storage_growth_is_bounded_and_gc_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "growth.db"
    store = await SqliteStore.open(path)
    try:
        page_size = int(await _one(store, "PRAGMA page_size"))

        async def db_bytes() -> int:
            await store._query("PRAGMA wal_checkpoint(TRUNCATE)")
            return int(await _one(store, "PRAGMA page_count")) * page_size

        empty = await db_bytes()  # the schema's own pages
        runs = [f"r{i}" for i in range(10)]
        for run_id in runs:
            await store.create_run(run_draft(run_id))
        seqs = dict.fromkeys(runs, 0)
        doc = {"doc": "z" * 20_000}  # the same large payload in every batch: stored once
        small = {"out": "y" * 300, "ok": True}
        raw_batch = 4 * len(dumps(small))

        sizes = []
        for b in range(200):
            run_id = runs[b % len(runs)]
            batch = [EventDraft("tool.completed", small, 100.0, step=b) for _ in range(4)]
            batch.append(EventDraft("tool.document", doc, 100.0, step=b))
            seqs[run_id] = await store.append_events(run_id, batch, expected_seq=seqs[run_id])
            sizes.append(await db_bytes())

        deltas = [after - before for before, after in itertools.pairwise(sizes)]
        assert max(deltas) <= 8 * page_size, "no batch grows the file by more than a few pages"
        assert sizes[-1] - sizes[0] <= 200 * 3 * raw_batch, "growth tracks the small payloads"
        first_half, second_half = sizes[100] - sizes[0], sizes[-1] - sizes[100]
        assert second_half <= 2 * first_half + 8 * page_size, "growth stays linear"
        assert int(await _one(store, "SELECT COUNT(*) FROM blobs")) == 1

        for run_id in runs:
            await store.append_events(
                run_id,
                [EventDraft("run.succeeded", {}, 200.0)],
                expected_seq=seqs[run_id],
                update=RunUpdate(status="succeeded"),
            )
        pages_before = int(await _one(store, "PRAGMA page_count"))
        result = await store.gc(finished_before=300.0)
        assert (result.runs, result.events, result.blobs) == (10, 1010, 1)
        pages_after = int(await _one(store, "PRAGMA page_count"))
        # What the runs took, not the schema's own pages, shrinks to under a quarter.
        assert pages_after * page_size - empty < (pages_before * page_size - empty) / 4
        assert int(await _one(store, "PRAGMA freelist_count")) == 0
    finally:
        await store.close()
    shrunk = path.stat().st_size - empty
    assert shrunk < (pages_before * page_size - empty) / 4, "the file itself shrank"


# --- opening: marked stores, atomic creation, read-only -----------------------------


async def test_a_new_store_is_marked_and_created_whole(tmp_path: Path) -> None:
    path = tmp_path / "new" / "s.db"
    # Eight openers race to create it; one file results, and every opener uses it.
    stores = await asyncio.gather(*(SqliteStore.open(path) for _ in range(8)))
    try:
        for i, store in enumerate(stores):
            await store.create_run(run_draft(f"r{i}"))
        assert len(await stores[0].list_runs()) == 8
    finally:
        for store in stores:
            await store.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.db"], "no half-made file left"
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)


# SQLite's SHARED lock bytes on the database file (sqlite3.c: PENDING_BYTE + 2, 510 bytes).
_LOCK_PROBE = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 510, 0x40000002, 0)
except OSError:
    print("held")
else:
    print("free")
"""


def _shared_lock(path: Path) -> str:
    """Whether some process holds a SQLite SHARED lock on ``path`` (asked from another one)."""
    done = subprocess.run(
        [sys.executable, "-c", _LOCK_PROBE, str(path)], capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip()


async def test_opening_a_store_again_keeps_the_locks_of_those_open(tmp_path: Path) -> None:
    # POSIX locks belong to the process: opening and closing the file outside SQLite
    # would drop the locks of this process's open connections, and another process
    # could then checkpoint and delete the WAL under them (a "malformed" image).
    path = tmp_path / "s.db"
    stores = [await SqliteStore.open(path)]
    try:
        await stores[0].create_run(run_draft("r"))
        assert _shared_lock(path) == "held"
        stores.append(await SqliteStore.open(path))
        stores.append(await SqliteStore.open(path, read_only=True))
        assert _shared_lock(path) == "held"
        for store in stores[1:]:
            await store.close()
        assert _shared_lock(path) == "held"
        assert await stores[0].get_run("r") is not None
    finally:
        await stores[0].close()
    assert _shared_lock(path) == "free"


async def test_read_only_open_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await SqliteStore.open(path) as store:
        await store.create_run(run_draft("r"), [EventDraft("e", {"x": 1}, 1.0)])
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    async with await SqliteStore.open(path, read_only=True) as reader:
        assert (await reader.get_run("r")) is not None
        assert [e.data for e in await reader.read_events("r")] == [{"x": 1}]
        with pytest.raises(StoreUnavailable, match="opened read-only"):
            await reader.create_run(run_draft("r2"))
        with pytest.raises(StoreUnavailable, match="read-only"):
            await reader._query(
                "INSERT INTO sessions VALUES ('s', 'default', 1, NULL, NULL, 0, NULL)"
            )
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


async def test_read_only_open_of_a_missing_store_is_empty_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "not" / "yet.db"
    store = await open_store(str(path), read_only=True)
    try:
        assert await store.list_runs() == [] and await store.list_resources() == []
    finally:
        await store.close()
    assert not path.parent.exists()


async def test_an_unmarked_store_of_an_earlier_agentrt_is_kept_and_marked_on_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    async with await SqliteStore.open(path) as store:
        await store.create_run(run_draft("r"))
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA application_id = 0")  # as stores were made before the marker
        conn.commit()
    async with await SqliteStore.open(path, read_only=True) as reader:
        assert await reader.get_run("r") is not None
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA application_id").fetchone() == (0,), "a read marked it"
    async with await SqliteStore.open(path) as store:
        assert await store.get_run("r") is not None
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)


async def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA application_id = 42")
        conn.execute("CREATE TABLE runs (id TEXT)")
        conn.commit()
    before = path.read_bytes()
    for read_only in (False, True):
        with pytest.raises(StoreInvalid, match="another application"):
            await SqliteStore.open(path, read_only=read_only)
    assert path.read_bytes() == before


# --- crash safety ------------------------------------------------------------------

CHILD = r"""
import asyncio
import sys

from agentrt.state import EventDraft, NewRun, RunUpdate, SqliteStore, Usage

SHARED = [{"shared": str(k) * 3000} for k in range(3)]


async def main(path, tasks, tag):
    store = await SqliteStore.open(path, inline_limit=256)

    async def writer(i):
        gen = 0
        while True:
            run_id = f"{tag}-{i}-{gen}"
            await store.create_run(
                NewRun(id=run_id, namespace="default", agent="a", created_at=float(gen)),
                [EventDraft("run.started", {"i": i}, 0.5)],
            )
            seq = 1
            for n in range(1, 31):
                events = [EventDraft("model", {"n": n, "pad": "x" * (n * 11)}, 0.5, step=n)]
                if n % 3 == 0:
                    events.append(EventDraft("tool", SHARED[(n // 3) % 3], 0.5, step=n))
                if n % 7 == 0:
                    events.append(EventDraft("tool", {"own": run_id * 60}, 0.5, step=n))
                seq = await store.append_events(
                    run_id, events, expected_seq=seq, update=RunUpdate(usage=Usage(1, 1))
                )
                if n % 5 == 0:
                    print("ack", run_id, seq, flush=True)
            # Announced before the terminal append: gc may delete the run right after it.
            print("finishing", run_id, flush=True)
            await store.append_events(
                run_id,
                [EventDraft("run.succeeded", {}, 0.5)],
                expected_seq=seq,
                update=RunUpdate(status="succeeded"),
            )
            gen += 1

    async def collector():
        while True:
            await store.gc(finished_before=1.0)
            await asyncio.sleep(0.002)

    await asyncio.gather(collector(), *(writer(i) for i in range(tasks)))


asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


def _run_and_kill(
    script: Path, db: Path, tag: str, kill_after: int
) -> tuple[dict[str, int], set[str]]:
    """Run the child until it acknowledged ``kill_after`` appends, then SIGKILL it."""
    acked: dict[str, int] = {}
    finishing: set[str] = set()
    seen = 0
    with subprocess.Popen(
        [sys.executable, str(script), str(db), "16", tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        # A safety net against a hung child, not a timing assertion.
        watchdog = threading.Timer(120.0, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None and proc.stderr is not None
            for line in proc.stdout:
                kind, run_id, *rest = line.split()
                if kind == "ack":
                    acked[run_id] = int(rest[0])
                    seen += 1
                    if seen >= kill_after:
                        break
                else:
                    finishing.add(run_id)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            stderr = proc.stderr.read()
        finally:
            watchdog.cancel()
    assert seen >= kill_after, f"child stopped early:\n{stderr}"
    assert proc.returncode == -signal.SIGKILL
    return acked, finishing


def _verify(db: Path, acked: dict[str, int], finishing: set[str]) -> list[tuple[str, int]]:
    """Check integrity, gapless logs and that every acknowledged append survived."""
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = conn.execute(
            "SELECT r.id, r.status, r.last_seq, COUNT(e.seq), MIN(e.seq), MAX(e.seq) "
            "FROM runs AS r LEFT JOIN events AS e ON e.run_pk = r.pk GROUP BY r.pk"
        ).fetchall()
        dangling = conn.execute(
            "SELECT COUNT(*) FROM events AS e LEFT JOIN blobs AS b ON b.hash = e.blob "
            "WHERE e.blob IS NOT NULL AND b.hash IS NULL"
        ).fetchone()[0]
    assert dangling == 0, "every blob an event references exists"
    last_seq = {}
    for run_id, _status, last, count, low, high in rows:
        assert count == last, f"{run_id}: {count} events but last_seq {last}"
        if last:
            assert (low, high) == (1, last), f"{run_id}: events {low}..{high}, not 1..{last}"
        last_seq[run_id] = last
    for run_id, seq in acked.items():
        if run_id not in finishing:
            assert last_seq.get(run_id, 0) >= seq, f"{run_id}: acknowledged seq {seq} lost"
    return [(run_id, last) for run_id, status, last, *_ in rows if status == "queued"]


@pytest.mark.slow
def test_crash_safety_under_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    open_runs: list[tuple[str, int]] = []
    for round_, kill_after in enumerate((1, 25, 200, 60)):
        acked, finishing = _run_and_kill(script, db, f"p{round_}", kill_after)
        open_runs = _verify(db, acked, finishing)
    assert open_runs, "some runs were mid-flight at the last kill"

    async def resume() -> None:
        async with await SqliteStore.open(db) as store:
            for run_id, last in open_runs:
                seq = await store.append_events(
                    run_id, [EventDraft("resumed", {}, 2.0)], expected_seq=last
                )
                assert seq == last + 1
            await store.create_run(run_draft("after-crash"), [EventDraft("e", {}, 2.0)])
            assert await _one(store, "PRAGMA integrity_check") == "ok"

    asyncio.run(resume())
    _verify(db, {}, set())
    os.remove(script)
