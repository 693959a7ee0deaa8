"""The SQLite store's schema: its migrations, its marker and the checks of both.

A store is marked as agentrt's with SQLite's ``application_id`` header field
(:data:`APPLICATION_ID`), so another application's database is never taken
for one (nor changed). Stores made before the marker are recognised by their
tables and marked by their next migration.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Final

from agentrt.errors import StoreInvalid, UsageError

__all__ = ["APPLICATION_ID", "MEMORY", "MIGRATIONS", "check_identity", "check_version", "migrate"]

APPLICATION_ID: Final = 0x61677274
"""``PRAGMA application_id`` of every agentrt store: "agrt" in ASCII."""

# What a store made before APPLICATION_ID had, and nothing else would have all of.
_UNMARKED_STORE_TABLES: Final = frozenset({"schema_version", "resources", "runs", "events"})

MEMORY: Final = ":memory:"
"""The path that names a private in-memory database."""

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE resources (
                kind TEXT NOT NULL,
                namespace TEXT NOT NULL,
                name TEXT NOT NULL,
                generation INTEGER NOT NULL,
                body TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                PRIMARY KEY (kind, namespace, name)
            )""",
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                namespace TEXT NOT NULL,
                created_at REAL NOT NULL,
                parent_session TEXT,
                parent_turn INTEGER,
                next_turn INTEGER NOT NULL DEFAULT 0
            ) WITHOUT ROWID""",
            # parent_run is informational (no FK): gc may delete the parent of a fork.
            """CREATE TABLE runs (
                pk INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                namespace TEXT NOT NULL,
                agent TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                session_id TEXT REFERENCES sessions (id),
                turn INTEGER,
                reason TEXT,
                finished_at REAL,
                idempotency_key TEXT,
                parent_run TEXT,
                fork_step INTEGER,
                lease_owner TEXT,
                lease_expires REAL,
                cancel_requested INTEGER NOT NULL DEFAULT 0,
                last_seq INTEGER NOT NULL DEFAULT 0,
                input_tokens INTEGER NOT NULL DEFAULT 0,
                output_tokens INTEGER NOT NULL DEFAULT 0,
                cost_usd REAL NOT NULL DEFAULT 0,
                model_calls INTEGER NOT NULL DEFAULT 0,
                tool_calls INTEGER NOT NULL DEFAULT 0,
                UNIQUE (namespace, idempotency_key)
            )""",
            # list_runs(session_id=...) and the sessions FK lookups; NULLs never collide.
            "CREATE UNIQUE INDEX runs_session_turn ON runs (session_id, turn)",
            # list_runs: newest first.
            "CREATE INDEX runs_created ON runs (created_at)",
            # claim_runs: only active runs are indexed, so it stays small.
            "CREATE INDEX runs_claimable ON runs (created_at) "
            "WHERE status IN ('queued', 'running')",
            # gc: only finished runs are indexed.
            "CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL",
            """CREATE TABLE events (
                run_pk INTEGER NOT NULL REFERENCES runs (pk),
                seq INTEGER NOT NULL,
                type TEXT NOT NULL,
                step INTEGER,
                ts REAL NOT NULL,
                data BLOB,
                blob BLOB,
                PRIMARY KEY (run_pk, seq)
            ) WITHOUT ROWID""",
            # gc: finding unreferenced blobs; only events with a blob are indexed.
            "CREATE INDEX events_blob ON events (blob) WHERE blob IS NOT NULL",
            """CREATE TABLE blobs (
                hash BLOB PRIMARY KEY,
                data BLOB NOT NULL
            ) WITHOUT ROWID""",
        ],
    ),
    (
        2,
        [
            # Tool quotas: one row per recorded tool call, so counting a tenant's or a
            # session's calls never decodes event payloads. Namespace and session are
            # copied from the run so both counts are served by one index each. Nothing
            # to backfill: tool.call events got their "toolset" key with this version.
            """CREATE TABLE tool_calls (
                run_pk INTEGER NOT NULL REFERENCES runs (pk),
                seq INTEGER NOT NULL,
                namespace TEXT NOT NULL,
                session_id TEXT,
                tool TEXT NOT NULL,
                ts REAL NOT NULL,
                PRIMARY KEY (run_pk, seq)
            ) WITHOUT ROWID""",
            # Quota per tenant per day.
            "CREATE INDEX tool_calls_tenant ON tool_calls (namespace, tool, ts)",
            # Quota per session; most runs have no session, so only the others are indexed.
            "CREATE INDEX tool_calls_session ON tool_calls (session_id, tool, ts, namespace) "
            "WHERE session_id IS NOT NULL",
        ],
    ),
    (
        3,
        [
            # Long-term memory per tenant. (namespace, key) makes a write happen once.
            """CREATE TABLE memories (
                pk INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                namespace TEXT NOT NULL,
                text TEXT NOT NULL,
                tags TEXT NOT NULL,
                key TEXT,
                run_id TEXT,
                session_id TEXT,
                created_at REAL NOT NULL,
                UNIQUE (namespace, key)
            )""",
            "CREATE INDEX memories_listed ON memories (namespace, created_at)",
            # External-content FTS5 index over text and tags, kept in step by triggers;
            # porter folds "rotates" and "rotation" to one stem.
            "CREATE VIRTUAL TABLE memories_fts USING fts5(text, tags, content='memories', "
            "content_rowid='pk', tokenize='porter unicode61')",
            "CREATE TRIGGER memories_indexed AFTER INSERT ON memories BEGIN "
            "INSERT INTO memories_fts (rowid, text, tags) VALUES (new.pk, new.text, new.tags); "
            "END",
            "CREATE TRIGGER memories_unindexed AFTER DELETE ON memories BEGIN "
            "INSERT INTO memories_fts (memories_fts, rowid, text, tags) "
            "VALUES ('delete', old.pk, old.text, old.tags); END",
        ],
    ),
    (
        4,
        [
            # list_runs(parent=...): a run's children and forks; most runs have no
            # parent, so only the others are indexed.
            "CREATE INDEX runs_parent ON runs (parent_run, created_at) "
            "WHERE parent_run IS NOT NULL",
        ],
    ),
]
"""Append-only list of ``(version, statements)``; never edit a released entry."""


def _apply(conn: sqlite3.Connection, statement: str) -> None:
    try:
        conn.execute(statement)
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc):
            raise UsageError(
                f"this Python's SQLite ({sqlite3.sqlite_version}) was built without FTS5, "
                "which long-term memory search needs; use a Python whose sqlite3 has it "
                "(python.org and distribution builds do)"
            ) from exc
        raise


def _not_a_store(store: str, what: str) -> StoreInvalid:
    return StoreInvalid(
        store,
        f"{what}, not an agentrt store",
        "point the store at an agentrt store, or at a path that does not exist yet "
        "to create a new one there",
    )


def check_identity(conn: sqlite3.Connection, store: str) -> None:
    """Refuse a SQLite database that is not an agentrt store.

    Raises:
        StoreInvalid: It carries another application's id, or has no id and is not
            a store made before stores were marked.
    """
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    if app == APPLICATION_ID:
        return
    if app != 0:
        raise _not_a_store(store, f"is a SQLite database of another application (id {app:#x})")
    tables = sorted(
        name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    )
    if _UNMARKED_STORE_TABLES.issubset(tables):
        return  # made by an agentrt from before the marker; its next migration marks it
    if not tables:
        raise _not_a_store(store, "is an empty SQLite database without agentrt's marker")
    shown = ", ".join(tables[:4]) + (", ..." if len(tables) > 4 else "")
    raise _not_a_store(store, f"is a SQLite database of another application (tables: {shown})")


def _version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)


def check_version(conn: sqlite3.Connection, store: str, *, writing: bool) -> int:
    """The store's schema version, if this agentrt can use it.

    Args:
        conn: A connection to a store (see :func:`check_identity`).
        store: The store's path, for messages.
        writing: Whether the caller will migrate an older schema (reads never do).

    Raises:
        StoreInvalid: The schema is newer than :data:`MIGRATIONS`, or older and
            ``writing`` is false.
    """
    current = _version(conn)
    latest = MIGRATIONS[-1][0]
    if current > latest:
        raise StoreInvalid(
            store,
            f"has schema version {current}, newer than this agentrt knows ({latest})",
            "upgrade agentrt to open it",
        )
    if current < latest and not writing:
        raise StoreInvalid(
            store,
            f"has schema version {current}, older than this agentrt reads ({latest}), "
            "and a command that only reads does not upgrade it",
            "run a command that writes first (e.g. `agentrt apply -f FILE`), which upgrades "
            "it, or use the agentrt that wrote it",
        )
    return current


def migrate(conn: sqlite3.Connection, store: str = MEMORY) -> None:
    """Mark the store and bring its schema up to the newest version, in one transaction.

    Raises:
        StoreInvalid: The database has a newer schema version than :data:`MIGRATIONS`.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        current = check_version(conn, store, writing=True)
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                _apply(conn, statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, time.time()))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
