"""The SQLite store's schema: connection settings, migrations and the version check.

:func:`open_connection` is the only way the store gets a connection: it applies
the PRAGMAs the store relies on (WAL, ``auto_vacuum``, foreign keys) and brings
the schema up to the newest version in :data:`MIGRATIONS`.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Final

from agentrt.errors import UsageError

__all__ = ["MEMORY", "MIGRATIONS", "migrate", "open_connection"]

MEMORY: Final = ":memory:"
"""The path that names a private in-memory database."""

_JOURNAL_SIZE_LIMIT: Final = 8 * 1024 * 1024

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
]
"""Append-only list of ``(version, statements)``; never edit a released entry."""


def open_connection(target: str, synchronous: str, timeout: float) -> sqlite3.Connection:
    """Connect to ``target`` (creating the file and its directory), configured and migrated.

    Args:
        target: A file path or :data:`MEMORY`.
        synchronous: The ``PRAGMA synchronous`` level, ``"NORMAL"`` or ``"FULL"``.
        timeout: Seconds to wait for another process's write lock.

    Returns:
        A connection in autocommit mode (``isolation_level=None``); the caller
        owns it and must use it from one thread.

    Raises:
        UsageError: The database cannot use WAL mode, or has a newer schema
            than this code knows.
    """
    path = target
    if target != MEMORY:
        file = Path(target).expanduser()
        file.parent.mkdir(parents=True, exist_ok=True)
        path = str(file)
    conn = sqlite3.connect(
        path,
        timeout=timeout,
        isolation_level=None,
        cached_statements=256,
    )
    try:
        # auto_vacuum only takes effect before the first table is created.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if target != MEMORY and str(mode).lower() != "wal":
            raise UsageError(
                f"could not switch {target} to WAL mode (got {mode!r}); "
                "put the database on a local file system"
            )
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


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


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to the newest version, in one transaction.

    Raises:
        UsageError: The database has a newer schema version than :data:`MIGRATIONS`.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        latest = MIGRATIONS[-1][0]
        if current > latest:
            raise UsageError(
                f"the database has schema version {current}, but this agentrt only knows "
                f"versions up to {latest}; upgrade agentrt to open it"
            )
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
