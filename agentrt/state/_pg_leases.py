"""The PostgreSQL store's leases, claims and cancellation.

Claims take queued and expired runs with ``FOR UPDATE SKIP LOCKED``: concurrent
claimers, in any number of processes, pass over the rows another is taking
instead of queueing behind it, and never take the same run. Every grant to an
owner that did not hold the lease live increments its fencing token.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

from agentrt.errors import NotFoundError
from agentrt.state._fence import granted_token
from agentrt.state._pg_rows import RUN_COLS, Conn, execute, fetch_all, fetch_one, run_record
from agentrt.state.records import TERMINAL_STATUSES, RunRecord

__all__ = ["LeaseOps"]

_LEASE_CHECK: Final = (
    "SELECT pk, status, lease_owner, lease_expires, lease_token FROM runs WHERE id = %s "
    "FOR NO KEY UPDATE"
)
_TAKE_LEASE: Final = (
    "UPDATE runs SET lease_owner = %s, lease_expires = %s, lease_ttl_s = %s, lease_token = %s, "
    "updated_at = %s, "
    "status = CASE status WHEN 'queued' THEN 'running' ELSE status END WHERE pk = %s "
    f"RETURNING {RUN_COLS}"
)
# A NULL token matches any grant: the token is checked only when the caller gives one.
_RENEW_LEASE: Final = (
    "UPDATE runs SET lease_expires = %s, lease_ttl_s = %s WHERE id = %s AND lease_owner = %s "
    "AND (%s::bigint IS NULL OR lease_token = %s)"
)
# The rows a write is locking are passed over, not waited for: that write may queue
# behind a whole tenant's (on its account rows), and the other leases must not wait
# with it. A passed-over run still the owner's counts as held: if the write is the
# owner's, it extends the lease itself; if not (a takeover), the next round sees it.
_RENEW_LEASES: Final = (
    "WITH free AS (SELECT pk FROM runs WHERE lease_owner = %(owner)s AND id = ANY(%(ids)s) "
    "FOR NO KEY UPDATE SKIP LOCKED) "
    "UPDATE runs AS r SET lease_expires = %(expires)s, lease_ttl_s = %(ttl)s FROM free "
    "WHERE r.pk = free.pk RETURNING r.id"
)
_OWNED: Final = "SELECT id FROM runs WHERE lease_owner = %s AND id = ANY(%s)"
_RELEASE_LEASE: Final = (
    "UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE id = %s "
    "AND lease_owner = %s AND (%s::bigint IS NULL OR lease_token = %s)"
)
# The partial index runs_claimable serves the inner query; SKIP LOCKED leaves the rows
# other claimers are taking to them. RETURNING's order is not the scan's: sorted after.
_CLAIM: Final = (
    "UPDATE runs AS r SET status = 'running', lease_owner = %(owner)s, "
    "lease_expires = %(expires)s, lease_ttl_s = %(ttl)s, updated_at = %(now)s, "
    "lease_token = r.lease_token + 1 "
    "FROM (SELECT pk FROM runs WHERE status IN ('queued', 'running') "
    "AND (lease_expires IS NULL OR lease_expires <= %(now)s) "
    "ORDER BY created_at, pk LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS picked "
    f"WHERE r.pk = picked.pk RETURNING r.pk, {', '.join('r.' + c for c in RUN_COLS.split(', '))}"
)
_CANCEL_CHECK: Final = (
    "SELECT pk, status, cancel_requested FROM runs WHERE id = %s FOR NO KEY UPDATE"
)
_CANCEL: Final = (
    "UPDATE runs SET cancel_requested = TRUE, cancel_cause = %s, cancel_by = %s, cancel_at = %s "
    f"WHERE pk = %s RETURNING {RUN_COLS}"
)
_CANCEL_REQUESTS: Final = (
    "SELECT id FROM runs WHERE cancel_requested AND finished_at IS NULL AND id = ANY(%s)"
)


class LeaseOps:
    """Lease, claim and cancellation operations (coroutines of a borrowed connection)."""

    async def acquire_lease(
        self, conn: Conn, run_id: str, owner: str, ttl_s: float, now: float, replacing: str | None
    ) -> RunRecord | None:
        row = await fetch_one(conn, _LEASE_CHECK, (run_id,))
        if row is None:
            return None
        pk, status, holder, expires, token = row
        if status in TERMINAL_STATUSES:
            return None
        held_by_other = (
            holder is not None and holder != owner and expires is not None and expires > now
        )
        if held_by_other and (replacing is None or holder != replacing):
            return None
        granted = granted_token(holder, expires, token, owner, now)
        taken = await fetch_one(conn, _TAKE_LEASE, (owner, now + ttl_s, ttl_s, granted, now, pk))
        assert taken is not None  # the row is locked by this transaction
        return run_record(taken)

    async def renew_lease(
        self, conn: Conn, run_id: str, owner: str, ttl_s: float, now: float, token: int | None
    ) -> bool:
        params = (now + ttl_s, ttl_s, run_id, owner, token, token)
        return await execute(conn, _RENEW_LEASE, params) > 0

    async def renew_leases(
        self, conn: Conn, run_ids: list[str], owner: str, ttl_s: float, now: float
    ) -> set[str]:
        params = {"owner": owner, "ids": run_ids, "expires": now + ttl_s, "ttl": ttl_s}
        renewed = {row[0] for row in await fetch_all(conn, _RENEW_LEASES, params)}
        busy = [run_id for run_id in run_ids if run_id not in renewed]
        if not busy:
            return renewed
        return renewed | {row[0] for row in await fetch_all(conn, _OWNED, (owner, busy))}

    async def release_lease(self, conn: Conn, run_id: str, owner: str, token: int | None) -> bool:
        """Whether a lease was given up (a write the run's watchers hear of)."""
        return await execute(conn, _RELEASE_LEASE, (run_id, owner, token, token)) > 0

    async def claim_runs(
        self, conn: Conn, owner: str, ttl_s: float, now: float, limit: int
    ) -> list[RunRecord]:
        params = {"owner": owner, "expires": now + ttl_s, "ttl": ttl_s, "now": now, "limit": limit}
        rows = await fetch_all(conn, _CLAIM, params)
        # Oldest first, as the scan took them: created_at, then pk.
        rows.sort(key=lambda row: (row[5], row[0]))
        return [run_record(row[1:]) for row in rows]

    async def request_cancel(
        self, conn: Conn, run_id: str, cause: str | None, by: str | None, now: float | None
    ) -> RunRecord:
        row = await fetch_one(conn, _CANCEL_CHECK, (run_id,))
        if row is None:
            raise NotFoundError(f"run {run_id!r} does not exist")
        pk, status, requested = row
        if not requested and status not in TERMINAL_STATUSES:
            at = time.time() if now is None else now
            updated = await fetch_one(conn, _CANCEL, (cause, by, at, pk))
        else:
            updated = await fetch_one(conn, f"SELECT {RUN_COLS} FROM runs WHERE pk = %s", (pk,))
        assert updated is not None
        return run_record(updated)

    async def cancel_requests(self, conn: Conn, run_ids: Sequence[str]) -> set[str]:
        return {row[0] for row in await fetch_all(conn, _CANCEL_REQUESTS, (list(run_ids),))}
