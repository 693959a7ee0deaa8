"""Opening a store: ``Store.from_url``, ``open_store``, and the SQLite store on a
connection the caller made or a function that makes one."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from agentrt.errors import StoreInvalid, UsageError
from agentrt.state import NewRun, Opening, SqliteStore, Store, open_store
from agentrt.state._sqlite_schema import APPLICATION_ID


def draft(run_id: str) -> NewRun:
    return NewRun(id=run_id, namespace="default", agent="helper", created_at=1.0)


async def test_store_from_url_picks_the_backend_and_opens_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    opening = Store.from_url(f"sqlite://{path.as_posix()}")
    assert isinstance(opening, Opening)
    async with opening as store:
        assert isinstance(store, SqliteStore) and isinstance(store, Store)
        await store.create_run(draft("r"))
    assert store._closed, "async with closes the store on exit"
    store = await Store.from_url(str(path))
    try:
        assert await store.get_run("r") is not None
    finally:
        await store.close()
    # open_store is the same, and still awaitable as it always was.
    async with open_store(str(path), read_only=True) as reader:
        assert await reader.get_run("r") is not None
    # A PostgreSQL URL picks that backend; nothing connects before the opening is awaited.
    assert isinstance(Store.from_url("postgresql://user@localhost/agentrt"), Opening)
    with pytest.raises(UsageError, match="psycopg 3; use postgresql://"):
        Store.from_url("postgresql+asyncpg://user@localhost/agentrt")
    with pytest.raises(UsageError, match="unsupported"):
        Store.from_url("redis://localhost")


async def test_local_dir_says_where_the_store_keeps_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with await SqliteStore.open("relative.db") as store:
        assert store.local_dir == tmp_path, "absolute, whatever the working directory later"
    async with SqliteStore.from_url("sqlite:///:memory:") as memory:
        assert memory.local_dir is None


async def test_a_caller_made_connection_is_migrated_used_and_left_open(tmp_path: Path) -> None:
    path = tmp_path / "given.db"
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        async with await SqliteStore.open(connection=conn) as store:
            assert store.local_dir == tmp_path
            assert store.path == str(path)
            await store.create_run(draft("r"), [])
        # The store is closed; the caller's connection is not, and sees the store's data.
        assert conn.execute("SELECT id FROM runs").fetchall() == [("r",)]
        assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,), "made like a new file"
    finally:
        conn.close()
    async with await SqliteStore.open(path) as again:
        assert await again.get_run("r") is not None, "an ordinary store file"


async def test_a_connection_function_is_called_on_the_stores_thread_and_closed(
    tmp_path: Path,
) -> None:
    made: list[tuple[sqlite3.Connection, int]] = []

    def connect() -> sqlite3.Connection:
        # check_same_thread=False only so that this test may look at it afterwards.
        conn = sqlite3.connect(tmp_path / "made.db", check_same_thread=False)
        made.append((conn, threading.get_ident()))
        return conn

    store = await SqliteStore.open(connection=connect)
    try:
        await store.create_run(draft("r"))
        assert await store.get_run("r") is not None
    finally:
        await store.close()
    ((conn, thread),) = made
    assert thread != threading.get_ident(), "made on the store's thread, where it is used"
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        conn.execute("SELECT 1")


async def test_a_connection_bound_to_another_thread_is_refused_with_the_fix(
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(tmp_path / "bound.db")  # check_same_thread defaults to True
    try:
        with pytest.raises(UsageError, match="check_same_thread=False"):
            await SqliteStore.open(connection=conn)
        assert conn.execute("SELECT 1").fetchone() == (1,), "the caller's, still open"
    finally:
        conn.close()


async def test_a_connection_to_another_applications_database_is_refused_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as setup, setup:
        setup.execute("CREATE TABLE notes (body TEXT)")
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        with pytest.raises(StoreInvalid, match="another application"):
            await SqliteStore.open(connection=conn)
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master")]
        assert tables == ["notes"]
        assert conn.execute("PRAGMA application_id").fetchone() == (0,)
    finally:
        conn.close()


async def test_a_store_takes_a_path_or_a_connection(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        with pytest.raises(UsageError, match="one of the two"):
            await SqliteStore.open(tmp_path / "x.db", connection=conn)
        with pytest.raises(UsageError, match="one of the two"):
            await SqliteStore.open()
        async with await SqliteStore.open(connection=conn) as store:
            assert store.local_dir is None, "an in-memory database has no files"
            await store.create_run(draft("m"))
            assert await store.get_run("m") is not None
    finally:
        conn.close()
