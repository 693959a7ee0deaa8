"""The PostgreSQL store's queue for the scheduler (see :mod:`agentrt.state.run_queue`),
as methods :class:`~agentrt.state.postgres.PostgresStore` takes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from agentrt.state._pg_rows import RUN_COLS, Conn, fetch_all, run_record
from agentrt.state._queue_sql import HEADS, RUNNING, caps_sql, ranked
from agentrt.state._session_sql import pg
from agentrt.state.records import RunRecord
from agentrt.state.run_queue import AGING_S, QueueView, RunCap

if TYPE_CHECKING:
    from agentrt.state._pg_runner import Runner

__all__ = ["QueueMethods"]

_HEADS: Final = pg(HEADS)
_RUNNING: Final = pg(RUNNING)
# As a claim of the queue's head, but of the runs picked: SKIP LOCKED leaves those
# another claimer is taking to it.
_CLAIM_PICKED: Final = (
    "UPDATE runs AS r SET status = 'running', lease_owner = %(owner)s, "
    "lease_expires = %(expires)s, lease_ttl_s = %(ttl)s, updated_at = %(now)s, "
    "lease_token = r.lease_token + 1 "
    "FROM (SELECT pk FROM runs WHERE id = {ids} AND status IN ('queued', 'running') "
    "AND (lease_expires IS NULL OR lease_expires <= %(now)s) FOR UPDATE SKIP LOCKED) AS picked "
    "WHERE r.pk = picked.pk{caps} RETURNING " + ", ".join("r." + c for c in RUN_COLS.split(", "))
)
# Claims under a tenant's caps take this transaction-scoped lock first.
_CLAIM_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_CLAIM_LOCK_KEY: Final = "agentrt-claim/"


async def _view(conn: Conn, now: float, per_tenant: int, aging_s: float) -> QueueView:
    heads = await fetch_all(conn, _HEADS, (now, per_tenant))
    running = await fetch_all(conn, _RUNNING, (now,))
    return QueueView(
        ranked(heads, now=now, per_tenant=per_tenant, aging_s=aging_s),
        {(row[0], row[1]): int(row[2]) for row in running},
    )


async def _claim(
    conn: Conn,
    run_ids: list[str],
    owner: str,
    ttl_s: float,
    now: float,
    caps: Mapping[str, Sequence[RunCap]],
) -> list[RunRecord]:
    params = {"owner": owner, "expires": now + ttl_s, "ttl": ttl_s, "now": now}
    free = [run_id for run_id in run_ids if not caps.get(run_id)]
    rows = await fetch_all(conn, _CLAIM_PICKED.format(ids="ANY(%(ids)s)", caps=""),
                           {**params, "ids": free}) if free else []  # fmt: skip
    claimed = {run.id: run for run in map(run_record, rows)}
    # Claims under caps, one tenant at a time: the lock makes each count see every
    # claim committed before it (READ COMMITTED reads as of each statement).
    for namespace in sorted({cap.namespace for c in caps.values() for cap in c}):
        await conn.execute(_CLAIM_LOCK, (_CLAIM_LOCK_KEY + namespace,))
    for run_id in run_ids:  # in order: an earlier claim counts against a later one's caps
        if not caps.get(run_id):
            continue
        cond, values = caps_sql(caps[run_id], now, lambda i: f"%(c{i})s")
        named = {f"c{i}": value for i, value in enumerate(values)}
        sql = _CLAIM_PICKED.format(ids="%(id)s", caps=cond)
        for run in map(run_record, await fetch_all(conn, sql, {**params, "id": run_id, **named})):
            claimed[run.id] = run
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
        self,
        run_ids: Sequence[str],
        owner: str,
        ttl_s: float,
        *,
        now: float,
        caps: Mapping[str, Sequence[RunCap]] | None = None,
    ) -> list[RunRecord]:
        """Lease the runs of ``run_ids`` still claimable, in the order given, each while
        its ``caps`` have room (claims under one tenant's caps take a lock in turn)."""
        if not run_ids:
            return []
        return await self._run.write(_claimed, _claim, list(run_ids), owner, ttl_s, now, caps or {})
