"""The PostgreSQL store's garbage collection: finished runs, what only they used, and
the blobs nobody refers to any more.

The runs it deletes are locked first, so an append racing with it either lands
before (and is deleted with the run) or finds the run gone. Sessions another
transaction is giving a run are skipped (``SKIP LOCKED``), not waited for. The
blob sweep holds the blob table's advisory lock exclusive, so no concurrent
write refers to a blob it deletes. Space is given back by PostgreSQL's
autovacuum, as for any table.
"""

from __future__ import annotations

from typing import Final

from agentrt.state._pg_ops import blob_lock_sql
from agentrt.state._pg_rows import Conn, execute, fetch_all
from agentrt.state.records import GcResult

__all__ = ["gc"]

_FINISHED: Final = "SELECT pk, id FROM runs WHERE finished_at < %s ORDER BY pk FOR UPDATE"
_EMPTY_SESSIONS: Final = (
    "DELETE FROM sessions WHERE id IN (SELECT s.id FROM sessions AS s WHERE s.created_at < %s "
    "AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.session_id = s.id) FOR UPDATE SKIP LOCKED)"
)
_ORPHAN_BLOBS: Final = (
    "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM events WHERE events.blob = blobs.hash) "
    "AND NOT EXISTS (SELECT 1 FROM run_blobs WHERE run_blobs.hash = blobs.hash)"
)


# A removed run's settled reservations: what they used stays on their accounts. One
# still held (its run ended without releasing it) stays, and so does what it holds.
_SETTLED_RESERVATIONS: Final = (
    "DELETE FROM budget_reservations WHERE run_id = ANY(%s) AND settled_at IS NOT NULL"
)


async def gc(conn: Conn, finished_before: float, blob_lock: int) -> GcResult:
    """Delete runs that finished before ``finished_before`` and what only they used."""
    found = await fetch_all(conn, _FINISHED, (finished_before,))
    pks = [pk for pk, _ in found]
    events = 0
    if pks:
        events = await execute(conn, "DELETE FROM events WHERE run_pk = ANY(%s)", (pks,))
        for table in ("tool_calls", "run_blobs"):
            await execute(conn, f"DELETE FROM {table} WHERE run_pk = ANY(%s)", (pks,))
        await execute(conn, "DELETE FROM runs WHERE pk = ANY(%s)", (pks,))
        ids = [run_id for _, run_id in found]
        await execute(conn, _SETTLED_RESERVATIONS, (ids,))
    # Only sessions older than the cutoff: a fresh session may be about to get its
    # first run.
    sessions = await execute(conn, _EMPTY_SESSIONS, (finished_before,))
    await execute(conn, blob_lock_sql(shared=False), (blob_lock,))
    blobs = await execute(conn, _ORPHAN_BLOBS)
    return GcResult(
        run_ids=tuple(run_id for _, run_id in found), events=events, blobs=blobs, sessions=sessions
    )
