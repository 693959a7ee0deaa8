"""The PostgreSQL store's sessions: listed with what their runs are doing, and deleted
with their runs.

A delete first locks the session's row, the lock a run's creation takes for its
turn: a run created meanwhile is either committed before the check (and refuses
the delete) or waits, then finds the session gone.
"""

from __future__ import annotations

from typing import Final

from agentrt.errors import SessionBusy
from agentrt.state._pg_rows import Conn, execute, fetch_all, fetch_one
from agentrt.state._session_sql import SESSION_TREE, activity, list_sql, pg
from agentrt.state.records import SessionActivity

__all__ = ["SessionOps"]

_LOCK_SESSION: Final = "SELECT 1 FROM sessions WHERE id = %s FOR UPDATE"
_TREE: Final = pg(SESSION_TREE)


class SessionOps:
    """Listing and deleting sessions (coroutines of a borrowed connection)."""

    async def list_sessions(
        self,
        conn: Conn,
        namespace: str | None,
        principal: str | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> list[SessionActivity]:
        sql, params = list_sql(namespace, principal, before, limit)
        return [activity(row) for row in await fetch_all(conn, pg(sql), params)]

    async def delete_session(self, conn: Conn, session_id: str) -> tuple[str, ...] | None:
        if await fetch_one(conn, _LOCK_SESSION, (session_id,)) is None:
            return None
        tree = await fetch_all(conn, _TREE, (session_id,))
        unfinished = [run_id for _, run_id, finished_at in tree if finished_at is None]
        if unfinished:
            raise SessionBusy(
                f"session {session_id!r} has unfinished runs: {', '.join(unfinished)}",
                session_id=session_id,
            )
        pks = [pk for pk, _, _ in tree]
        if pks:
            for table in ("events", "tool_calls", "run_blobs"):
                await execute(conn, f"DELETE FROM {table} WHERE run_pk = ANY(%s)", (pks,))
            await execute(conn, "DELETE FROM runs WHERE pk = ANY(%s)", (pks,))
        await execute(conn, "DELETE FROM sessions WHERE id = %s", (session_id,))
        return tuple(run_id for _, run_id, _ in tree)
