"""The SQLite store's sessions: listed with what their runs are doing, and deleted
with their runs; and the store's session methods, which :class:`SqliteStore` takes.

The operations run on the writer thread like :mod:`agentrt.state._sqlite_ops`. A
delete is one transaction of SQLite's single writer, so no run of the session is
created or started between its check and its delete.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, TypeVar

from agentrt.errors import SessionBusy
from agentrt.state._session_sql import SESSION_TREE, activity, list_sql
from agentrt.state._sqlite_ops import Ops
from agentrt.state._sqlite_part import SqlitePart
from agentrt.state._sqlite_writer import READ, WRITE
from agentrt.state.records import SessionActivity, SessionRecord

__all__ = ["SessionMethods", "SessionOps"]

T = TypeVar("T")


class SessionOps:
    """Listing and deleting sessions on one connection (writer thread only)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Wrap ``conn``."""
        self.conn = conn

    def list_sessions(
        self,
        namespace: str | None,
        principal: str | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> list[SessionActivity]:
        sql, params = list_sql(namespace, principal, before, limit)
        return [activity(row) for row in self.conn.execute(sql, params)]

    def delete_session(self, session_id: str) -> tuple[str, ...] | None:
        conn = self.conn
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            return None
        tree = conn.execute(SESSION_TREE, (session_id,)).fetchall()
        unfinished = [run_id for _, run_id, finished_at in tree if finished_at is None]
        if unfinished:
            raise SessionBusy(
                f"session {session_id!r} has unfinished runs: {', '.join(unfinished)}",
                session_id=session_id,
            )
        pks = [(pk,) for pk, _, _ in tree]
        for table in ("events", "tool_calls", "run_blobs"):
            conn.executemany(f"DELETE FROM {table} WHERE run_pk = ?", pks)
        conn.executemany("DELETE FROM runs WHERE pk = ?", pks)
        conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        return tuple(run_id for _, run_id, _ in tree)


class SessionMethods(SqlitePart):
    """The session methods of :class:`~agentrt.state.sqlite.SqliteStore`."""

    if TYPE_CHECKING:

        @property
        def _ops(self) -> Ops: ...

        @property
        def _sessions(self) -> SessionOps: ...

    async def create_session(self, session: SessionRecord) -> SessionRecord:
        """Create a session; if the id exists already, return the stored one unchanged."""
        return await self._submit(WRITE, self._ops.create_session, session)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session, or ``None``."""
        return await self._submit(READ, self._ops.get_session, session_id)

    async def list_sessions(
        self,
        *,
        namespace: str | None = None,
        principal: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 100,
    ) -> list[SessionActivity]:
        """Sessions (of ``namespace``, started by ``principal``), newest first, with
        their active and waiting runs."""
        return await self._submit(
            READ, self._sessions.list_sessions, namespace, principal, before, limit
        )

    async def delete_session(self, session_id: str) -> tuple[str, ...] | None:
        """Delete a session with its runs and their children; ``SessionBusy`` while one
        is unfinished. Returns the runs deleted (``None``: no such session)."""
        return await self._write(_deleted, self._sessions.delete_session, session_id)


def _deleted(run_ids: tuple[str, ...] | None) -> tuple[str, ...]:
    """The runs a delete removed: their watchers hear of it."""
    return run_ids or ()
