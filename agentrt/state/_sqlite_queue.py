"""The SQLite store's queue for the scheduler (see :mod:`agentrt.state.run_queue`), as
methods :class:`~agentrt.state.sqlite.SqliteStore` takes. Claims are serialised by
SQLite's single writer."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from agentrt._json import dumps_str
from agentrt.state._queue_sql import (
    CLASS_HEAD,
    FIRST_CLASS,
    NEXT_CLASS_OF_TENANT,
    NEXT_TENANT,
    RUNNING,
    caps_sql,
    ranked,
)
from agentrt.state._rows import RUN_COLS, run_record
from agentrt.state._sqlite_part import SqlitePart
from agentrt.state._sqlite_watch import touched_claimed
from agentrt.state._sqlite_writer import READ
from agentrt.state.records import RunRecord
from agentrt.state.run_queue import AGING_S, QueueView, RunCap

if TYPE_CHECKING:
    from agentrt.state._sqlite_ops import Ops

__all__ = ["QueueMethods"]

T = TypeVar("T")

_PICKABLE: Final = (
    "SELECT pk, id FROM runs WHERE id IN (SELECT value FROM json_each(?)) "
    "AND status IN ('queued', 'running') AND (lease_expires IS NULL OR lease_expires <= ?)"
)
_CLAIM: Final = (
    "UPDATE runs SET status = 'running', lease_owner = ?, lease_expires = ?, lease_ttl_s = ?, "
    "updated_at = ?, lease_token = lease_token + 1 WHERE pk = ?{caps} RETURNING " + RUN_COLS
)


def _view(conn: sqlite3.Connection, now: float, per_tenant: int, aging_s: float) -> QueueView:
    heads: list[Any] = []
    found = conn.execute(FIRST_CLASS).fetchone()
    while found is not None:  # each (tenant, class) in the index, one seek apiece
        namespace, priority = found
        heads += conn.execute(CLASS_HEAD, (namespace, priority, now, per_tenant)).fetchall()
        found = conn.execute(NEXT_CLASS_OF_TENANT, (namespace, priority)).fetchone()
        if found is None:
            found = conn.execute(NEXT_TENANT, (namespace,)).fetchone()
    running = conn.execute(RUNNING, (now,)).fetchall()
    return QueueView(
        ranked(heads, now=now, per_tenant=per_tenant, aging_s=aging_s),
        {(row[0], row[1]): int(row[2]) for row in running},
    )


def _claim(
    conn: sqlite3.Connection,
    run_ids: list[str],
    owner: str,
    ttl_s: float,
    now: float,
    caps: Mapping[str, Sequence[RunCap]],
) -> list[RunRecord]:
    found = conn.execute(_PICKABLE, (dumps_str(run_ids), now)).fetchall()
    pks = {row[1]: row[0] for row in found}
    claimed = []
    for run_id in run_ids:  # in order: an earlier claim counts against a later one's caps
        if run_id not in pks:
            continue
        cond, params = caps_sql(caps.get(run_id, ()), now)
        row = conn.execute(
            _CLAIM.format(caps=cond), (owner, now + ttl_s, ttl_s, now, pks[run_id], *params)
        ).fetchone()
        if row is not None:
            claimed.append(run_record(row))
    return claimed


class QueueMethods(SqlitePart):
    """The queue methods of :class:`~agentrt.state.sqlite.SqliteStore`."""

    if TYPE_CHECKING:

        @property
        def _ops(self) -> Ops: ...

    async def queue_view(
        self, *, now: float, per_tenant: int, aging_s: float = AGING_S
    ) -> QueueView:
        """Each tenant's first claimable runs in its order, and what runs now (see
        :class:`~agentrt.state.run_queue.RunQueue`)."""
        return await self._submit(READ, _view, self._ops.conn, now, per_tenant, aging_s)

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
        its ``caps`` have room (claims are serialised by the single writer)."""
        if not run_ids:
            return []
        return await self._write(touched_claimed, _claim, self._ops.conn, list(run_ids), owner,
                                 ttl_s, now, caps or {})  # fmt: skip
