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
from agentrt.state.migrate import check_version as check_schema_version
from agentrt.state.migrate import load_migrations
from agentrt.state.migrate import migrate as run_migrations

__all__ = ["APPLICATION_ID", "MEMORY", "MIGRATIONS", "check_identity", "check_version", "migrate"]

APPLICATION_ID: Final = 0x61677274
"""``PRAGMA application_id`` of every agentrt store: "agrt" in ASCII."""

# What a store made before APPLICATION_ID had, and nothing else would have all of.
_UNMARKED_STORE_TABLES: Final = frozenset({"schema_version", "resources", "runs", "events"})

MEMORY: Final = ":memory:"
"""The path that names a private in-memory database."""

MIGRATIONS: Final = load_migrations("sqlite")
"""The SQLite store's numbered migrations (``agentrt/state/migrations/sqlite/``)."""


def split_statements(script: str) -> list[str]:
    """The statements of a SQL script, each whole (a trigger's body keeps its ``;``)."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statement = pending.strip()
            if statement.rstrip(";").strip() and not _only_comments(statement):
                statements.append(statement)
            pending = ""
    if pending.rstrip(";").strip() and not _only_comments(pending):
        raise ValueError(f"unfinished SQL statement in a migration: {pending.strip()[:60]!r}")
    return statements


def _only_comments(text: str) -> bool:
    lines = (line.strip() for line in text.rstrip(";").splitlines())
    return all(not line or line.startswith("--") for line in lines)


class _Target:
    """The runner's view of a SQLite connection (see :mod:`agentrt.state.migrate`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def applied(self) -> list[int]:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        return [v for (v,) in self.conn.execute("SELECT version FROM schema_version")]

    def execute(self, script: str) -> None:
        # One statement at a time: executescript() would commit the open transaction.
        for statement in split_statements(script):
            _apply(self.conn, statement)

    def record(self, number: int) -> None:
        self.conn.execute("INSERT INTO schema_version VALUES (?, ?)", (number, time.time()))


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
    check_schema_version(current, MIGRATIONS, store=store, writing=writing)
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
        run_migrations(_Target(conn), MIGRATIONS, store=store)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
