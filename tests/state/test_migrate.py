"""Numbered migrations: one runner for every backend; stores made by earlier agentrt
versions open, upgrade once, and end up with the schema of a new store."""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from agentrt.errors import StoreInvalid
from agentrt.state import SqliteStore
from agentrt.state._sqlite_schema import MIGRATIONS, _Target, split_statements
from agentrt.state.migrate import Migration, load_migrations, migrate, pending

FIXTURES = Path(__file__).parent / "fixtures"
# Files made by earlier versions' own code (resources, a session, a finished run
# with a blob-sized event and a tool call, a child run, a fact in memory):
# store-v3 before list_runs(parent=) had its index, store-v4 before migrations
# moved to numbered files, store-v5 before leases had fencing tokens (its child run
# is leased).
OLD_STORES = {"store-v3.db.gz": 3, "store-v4.db.gz": 4, "store-v5.db.gz": 5}


def _unpack(name: str, into: Path) -> Path:
    path = into / name.removesuffix(".gz")
    path.write_bytes(gzip.decompress((FIXTURES / name).read_bytes()))
    return path


def _schema(path: Path) -> list[tuple[str, str, str]]:
    """Every table, index and trigger with its SQL, whitespace aside (an earlier version
    indented its statements differently)."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
            "ORDER BY type, name"
        )
        return [(t, n, " ".join((sql or "").split())) for t, n, sql in rows]


def test_sqlite_migrations_are_numbered_files_of_whole_statements() -> None:
    assert load_migrations("sqlite") == MIGRATIONS
    numbers = [m.number for m in MIGRATIONS]
    # From 1, each once; a number handed to a change not landed yet may be missing.
    assert numbers[0] == 1 and numbers == sorted(set(numbers))
    assert numbers == [m.number for m in load_migrations("postgresql")]
    assert MIGRATIONS[0].name == "initial"
    for m in MIGRATIONS:
        statements = split_statements(m.script)
        assert statements, f"{m.number:04d}_{m.name}.sql has no statement"
        assert all(sqlite3.complete_statement(s) for s in statements)
    # A trigger's body keeps its own semicolons; a comment's semicolon ends nothing.
    script = "-- one; two\nCREATE TABLE t (x);\nCREATE TRIGGER g AFTER INSERT ON t BEGIN SELECT 1; END;\n"
    assert [s.splitlines()[-1] for s in split_statements(script)] == [
        "CREATE TABLE t (x);",
        "CREATE TRIGGER g AFTER INSERT ON t BEGIN SELECT 1; END;",
    ]


def test_pending_is_what_a_database_lacks_and_refuses_a_newer_one() -> None:
    steps = [Migration(n, f"m{n}", f"-- {n}") for n in (1, 2, 3)]
    assert [m.number for m in pending(steps, [], store="db")] == [1, 2, 3]
    assert [m.number for m in pending(steps, [1, 2], store="db")] == [3]
    assert pending(steps, [1, 2, 3], store="db") == []
    with pytest.raises(StoreInvalid, match="schema version 4, newer than this agentrt knows"):
        pending(steps, [1, 2, 3, 4], store="db")


def test_a_failing_migration_records_nothing_and_changes_nothing() -> None:
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as conn:
        steps = [
            Migration(1, "good", "CREATE TABLE a (x);"),
            Migration(2, "bad", "CREATE TABLE b (x); CREATE TABLE a (y);"),  # a exists
        ]
        conn.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="already exists"):
            migrate(_Target(conn), steps, store=":memory:")
        conn.execute("ROLLBACK")
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master")]
        assert names == [], "the backend's transaction holds every step, or none"
        conn.execute("BEGIN IMMEDIATE")
        assert migrate(_Target(conn), steps[:1], store=":memory:") == [1]
        conn.execute("COMMIT")
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


@pytest.mark.parametrize("name", OLD_STORES)
async def test_a_store_made_by_an_earlier_version_opens_and_upgrades_to_a_new_stores_schema(
    tmp_path: Path, name: str
) -> None:
    path = _unpack(name, tmp_path)
    if OLD_STORES[name] < MIGRATIONS[-1].number:
        # Reading it needs the newest schema; the refusal leaves it as it was.
        with pytest.raises(StoreInvalid, match="older than this agentrt reads"):
            await SqliteStore.open(path, read_only=True)
    async with await SqliteStore.open(path) as store:
        parent = await store.get_run("run_parent")
        assert parent is not None and parent.status == "succeeded"
        events = await store.read_events("run_parent")
        assert [e.type for e in events] == ["run.created", "big", "tool.call", "run.finished"]
        assert events[1].data == {"text": "x" * 5000}, "a payload from the blob table"
        assert [r.id for r in await store.list_runs(parent="run_parent")] == ["run_child"]
        assert await store.count_tool_calls(namespace="default", tool="search") == 1
        assert (await store.search_memory("default", "staging"))[0].record.tags == ("ops",)
        assert await store.get_resource("Agent", "default", "helper") is not None
        versions = [v for (v,) in await store._query("SELECT version FROM schema_version")]
        assert versions == [m.number for m in MIGRATIONS]
    async with await SqliteStore.open(tmp_path / "new.db"):
        pass
    assert _schema(path) == _schema(tmp_path / "new.db"), "upgraded = made new"


async def test_processes_opening_an_old_store_together_upgrade_it_once(tmp_path: Path) -> None:
    path = _unpack("store-v3.db.gz", tmp_path)
    stores = await asyncio.gather(*(SqliteStore.open(path) for _ in range(6)))
    try:
        rows = await stores[0]._query("SELECT version FROM schema_version ORDER BY version")
        assert [v for (v,) in rows] == [m.number for m in MIGRATIONS]
        for store in stores:
            assert await store.get_run("run_child") is not None
    finally:
        for store in stores:
            await store.close()


async def test_a_lease_taken_before_fencing_tokens_has_token_0_and_its_next_grant_1(
    tmp_path: Path,
) -> None:
    path = _unpack("store-v5.db.gz", tmp_path)
    async with await SqliteStore.open(path) as store:
        child = await store.get_run("run_child")
        assert child is not None and (child.lease_owner, child.lease_token) == ("host:1:abc", 0)
        taken = await store.acquire_lease("run_child", "w", 30.0, now=100.0)
        assert taken is not None and taken.lease_token == 1
