"""The PostgreSQL store's queue for the scheduler (see :mod:`agentrt.state.run_queue`),
as methods :class:`~agentrt.state.postgres.PostgresStore` takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from agentrt.state._pg_rows import RUN_COLS, Conn, fetch_all, run_record
from agentrt.state._queue_sql import RUNNING, queued_of, waiting_sql
from agentrt.state._session_sql import pg
from agentrt.state.records import RunRecord
from agentrt.state.run_queue import AGING_S, QueueView

if TYPE_CHECKING:
    from agentrt.state._pg_runner import Runner

__all__ = ["QueueMethods"]

_WAITING: Final = pg(waiting_sql("FLOOR({})::integer"))
_RUNNING: Final = pg(RUNNING)
# As a claim of the queue's head, but of the runs picked: SKIP LOCKED leaves those
# another claimer is taking to it.
_CLAIM_PICKED: Final = (
    "UPDATE runs AS r SET status = 'running', lease_owner = %(owner)s, "
    "lease_expires = %(expires)s, lease_ttl_s = %(ttl)s, updated_at = %(now)s, "
    "lease_token = r.lease_token + 1 "
    "FROM (SELECT pk FROM runs WHERE id = ANY(%(ids)s) AND status IN ('queued', 'running') "
    "AND (lease_expires IS NULL OR lease_expires <= %(now)s) FOR UPDATE SKIP LOCKED) AS picked "
    f"WHERE r.pk = picked.pk RETURNING {', '.join('r.' + c for c in RUN_COLS.split(', '))}"
)


async def _view(conn: Conn, now: float, per_tenant: int, aging_s: float) -> QueueView:
    waiting = await fetch_all(conn, _WAITING, (now, aging_s, now, per_tenant))
    running = await fetch_all(conn, _RUNNING, (now,))
    return QueueView(
        tuple(queued_of(row) for row in waiting),
        {(row[0], row[1]): int(row[2]) for row in running},
    )


async def _claim(
    conn: Conn, run_ids: list[str], owner: str, ttl_s: float, now: float
) -> list[RunRecord]:
    params = {"owner": owner, "expires": now + ttl_s, "ttl": ttl_s, "now": now, "ids": run_ids}
    claimed = {run.id: run for run in map(run_record, await fetch_all(conn, _CLAIM_PICKED, params))}
    return [claimed[run_id] for run_id in run_ids if run_id in claimed]


def _claimed(result: list[RunRecord]) -> list[str]:
    return [run.id for run in result]


class QueueMethods:
    """The queue methods of :class:`~agentrt.state.postgres.PostgresStore`."""

    if TYPE_CHECKING:
        _run: Runner

    async def queue_view(
        self, *, now: float, per_tenant: int, aging_s: float = AGING_S
    ) -> QueueView:
        """Each tenant's first claimable runs in its order, and what runs now (see
        :class:`~agentrt.state.run_queue.RunQueue`)."""
        return await self._run.read(_view, now, per_tenant, aging_s)

    async def claim_picked(
        self, run_ids: Sequence[str], owner: str, ttl_s: float, *, now: float
    ) -> list[RunRecord]:
        """Lease the runs of ``run_ids`` still claimable, in the order given."""
        if not run_ids:
            return []
        return await self._run.write(_claimed, _claim, list(run_ids), owner, ttl_s, now)
