"""The PostgreSQL store's schema: where its tables live, its marker, its migrations.

The store's tables live in one schema: the first of the connection's
``search_path`` (``?schema=NAME`` sets it, and makes the schema when missing). Its
``schema_version`` table carries agentrt's marker as its comment, so another
application's table of that name is never taken for one. Migrations run in one
transaction holding an advisory lock keyed by the schema, so any number of
workers starting together on a new or older schema migrate it once.
"""

from __future__ import annotations

import hashlib
import time
from typing import Final

from psycopg import sql

from agentrt.errors import StoreInvalid, StoreUnavailable
from agentrt.state._pg_rows import Conn, execute, fetch_all, fetch_one
from agentrt.state.migrate import check_version, load_migrations, migrate_async

__all__ = ["MARKER", "MIGRATIONS", "lock_key", "prepare"]

MIGRATIONS: Final = load_migrations("postgresql")
"""The PostgreSQL store's numbered migrations (``agentrt/state/migrations/postgresql/``)."""

MARKER: Final = "agentrt store"
"""The comment on the ``schema_version`` table of every agentrt store."""

_LOCK: Final = "SELECT pg_advisory_xact_lock(%s)"
_VERSION_TABLE: Final = (
    "SELECT obj_description(c.oid, 'pg_class') FROM pg_class AS c "
    "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = 'schema_version'"
)


def lock_key(schema: str, purpose: str) -> int:
    """A 64-bit advisory lock key for ``purpose`` (``"migrate"``, ``"blobs"``) in
    ``schema``: advisory locks are the database's, so the schema is part of the key."""
    digest = hashlib.sha256(f"agentrt:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _Target:
    """The runner's view of a connection in the migrating transaction."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def applied(self) -> list[int]:
        await execute(
            self.conn,
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)",
        )
        await execute(self.conn, f"COMMENT ON TABLE schema_version IS '{MARKER}'")
        return [v for (v,) in await fetch_all(self.conn, "SELECT version FROM schema_version")]

    async def execute(self, script: str) -> None:
        # No parameters: psycopg sends the script as one simple query, all its statements.
        await self.conn.execute(script)

    async def record(self, number: int) -> None:
        await execute(
            self.conn, "INSERT INTO schema_version VALUES (%s, %s)", (number, time.time())
        )


async def _current_schema(conn: Conn, store: str) -> str:
    row = await fetch_one(conn, "SELECT current_schema()")
    if row is None or row[0] is None:
        raise StoreUnavailable(
            store,
            "has no schema to keep its tables in (no schema of the search_path exists)",
            "name one with ?schema=NAME (made when missing), or create the schema",
        )
    return str(row[0])


async def _version(conn: Conn, schema: str, store: str) -> int | None:
    """The store's schema version; ``None`` for a schema without a store yet."""
    row = await fetch_one(conn, _VERSION_TABLE, (schema,))
    if row is None:
        return None
    if row[0] != MARKER:
        raise StoreInvalid(
            store,
            f"has a table {schema}.schema_version that is not agentrt's",
            "give the store a schema of its own (?schema=agentrt)",
        )
    newest = await fetch_one(conn, "SELECT MAX(version) FROM schema_version")
    return int(newest[0] or 0) if newest is not None else 0


def _no_store(store: str, schema: str) -> StoreInvalid:
    return StoreInvalid(
        store,
        f"has no agentrt store in schema {schema} yet",
        "run a command that writes first (e.g. `agentrt apply -f FILE`), which makes it",
    )


async def prepare(conn: Conn, store: str, *, schema: str | None, read_only: bool) -> str:
    """Make (unless ``read_only``) or check the store's schema; return its name.

    ``conn`` is a connection not in a transaction; it is left in none.

    Raises:
        StoreInvalid: The schema is newer than this agentrt knows, older when
            ``read_only``, has no store when ``read_only``, or holds another
            application's ``schema_version`` table.
        StoreUnavailable: No schema of the search path exists.
    """
    if schema is not None:
        exists = await fetch_one(conn, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if exists is None and read_only:
            raise _no_store(store, schema)
        if exists is None:
            async with conn.transaction():
                # Under the lock: CREATE SCHEMA IF NOT EXISTS still races with itself.
                await execute(
                    conn, "SELECT pg_advisory_xact_lock(%s)", (lock_key(schema, "migrate"),)
                )
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
    current = await _current_schema(conn, store)
    latest = MIGRATIONS[-1].number
    version = await _version(conn, current, store)
    if read_only:
        if version is None:
            raise _no_store(store, current)
        check_version(version, MIGRATIONS, store=store, writing=False)
        return current
    if version == latest:
        return current
    async with conn.transaction():
        await execute(conn, _LOCK, (lock_key(current, "migrate"),))
        # Read again under the lock: another worker may have migrated meanwhile.
        await _version(conn, current, store)
        await migrate_async(_Target(conn), MIGRATIONS, store=store)
    return current
