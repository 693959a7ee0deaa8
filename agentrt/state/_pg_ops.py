"""The PostgreSQL store's operations on resources, sessions, runs, events and quotas.

Each runs inside the transaction the store opened on a borrowed connection (none
begins or commits one itself), with the same results and errors as the SQLite
store's. Rows a decision depends on are locked first (``FOR NO KEY UPDATE``), so
concurrent writers to one run are serialised by PostgreSQL and each sees the
other's committed write. Event payloads larger than the inline limit go to the
``blobs`` table under their SHA-256.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any, Final

from agentrt._json import dumps, dumps_str, loads
from agentrt.errors import CancelRequested, ConflictError, LeaseLost, NotFoundError, SessionBusy
from agentrt.state._audit_sql import event_entries, resource_entry
from agentrt.state._fence import check_fence
from agentrt.state._pg_audit import append_on
from agentrt.state._pg_ledger import release_on, settle_on
from agentrt.state._pg_rows import (
    RUN_COLS,
    SESSION_COLS,
    Conn,
    execute,
    execute_many,
    fetch_all,
    fetch_one,
    resource_record,
    run_record,
    session_record,
)
from agentrt.state._run_query import RunFilter, count_sql, list_sql
from agentrt.state._session_sql import UNFINISHED_TURN, pg
from agentrt.state.audit import AuditDraft
from agentrt.state.records import (
    TERMINAL_STATUSES,
    Event,
    EventDraft,
    NewRun,
    ResourceRecord,
    RunRecord,
    RunUpdate,
    SessionRecord,
    Usage,
)

__all__ = ["Ops", "RunTaken"]

_SELECT_RUN_BY_ID: Final = f"SELECT {RUN_COLS} FROM runs WHERE id = %s"
_SELECT_RUN_BY_KEY: Final = (
    f"SELECT {RUN_COLS} FROM runs WHERE namespace = %s AND idempotency_key = %s"
)
# Nothing on a conflict (the id, or the key, taken meanwhile): the caller then finds
# the run that has it, once the transaction that wrote it is committed.
_INSERT_RUN: Final = (
    "INSERT INTO runs (id, namespace, agent, status, created_at, updated_at, session_id, turn, "
    "finished_at, idempotency_key, parent_run, fork_step, last_seq, lease_owner, lease_expires, "
    "lease_token, principal, lease_ttl_s, priority) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING RETURNING pk"
)
_TAKE_TURN: Final = (
    "UPDATE sessions SET next_turn = next_turn + 1 WHERE id = %s RETURNING next_turn - 1"
)
_APPEND_CHECK: Final = (
    "SELECT pk, last_seq, lease_owner, lease_token, status, finished_at, namespace, "
    "session_id, cancel_requested, agent FROM runs WHERE id = %s FOR NO KEY UPDATE"
)
_UNFINISHED_TURN: Final = pg(UNFINISHED_TURN)
# A write of the lease's holder extends the lease: proof enough that it is alive.
_EXTENDED: Final = (
    "CASE WHEN %(held)s::boolean AND lease_ttl_s IS NOT NULL AND lease_expires IS NOT NULL "
    "THEN GREATEST(lease_expires, %(now)s::float8 + lease_ttl_s) ELSE lease_expires END"
)
_BUMP_RUN: Final = (
    f"UPDATE runs SET last_seq = %(seq)s, updated_at = %(now)s, lease_expires = {_EXTENDED} "
    "WHERE pk = %(pk)s"
)
# With a status, the reason is replaced (NULL clears it); without, NULL keeps it. A
# terminal status ends the lease in the same statement: a finished run has no owner.
_UPDATE_RUN: Final = (
    "UPDATE runs SET last_seq = %(seq)s, updated_at = %(now)s, "
    "status = COALESCE(%(status)s::text, status), "
    "reason = CASE WHEN %(status)s::text IS NULL THEN COALESCE(%(reason)s::text, reason) "
    "ELSE %(reason)s::text END, finished_at = %(finished_at)s::float8, "
    "lease_owner = CASE WHEN %(ends)s THEN NULL ELSE lease_owner END, "
    f"lease_expires = CASE WHEN %(ends)s THEN NULL ELSE {_EXTENDED} END, "
    "input_tokens = input_tokens + %(input_tokens)s, "
    "output_tokens = output_tokens + %(output_tokens)s, cost_usd = cost_usd + %(cost_usd)s, "
    "model_calls = model_calls + %(model_calls)s, tool_calls = tool_calls + %(tool_calls)s "
    "WHERE pk = %(pk)s"
)
_INSERT_EVENT: Final = (
    "INSERT INTO events (run_pk, seq, type, step, ts, data, blob) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_BLOB: Final = "INSERT INTO blobs (hash, data) VALUES (%s, %s) ON CONFLICT DO NOTHING"
# One statement for the whole read: no row means no run; a row without a seq, no events.
_SELECT_EVENTS: Final = (
    "SELECT e.seq, e.type, COALESCE(e.data, b.data), e.ts, e.step FROM runs AS r "
    "LEFT JOIN events AS e ON e.run_pk = r.pk AND e.seq > %s "
    "LEFT JOIN blobs AS b ON b.hash = e.blob WHERE r.id = %s ORDER BY e.seq"
)
_INSERT_TOOL_CALL: Final = (
    "INSERT INTO tool_calls (run_pk, seq, namespace, session_id, tool, ts) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
# The engine's intent event (agentrt.engine.events.TOOL_CALL); the store layer does
# not import the engine.
_TOOL_CALL: Final = "tool.call"
_RESOURCE_COLS: Final = "kind, namespace, name, generation, body, created_at, updated_at"
_INSERT_RESOURCE: Final = (
    f"INSERT INTO resources ({_RESOURCE_COLS}) VALUES (%s, %s, %s, 1, %s, %s, %s) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)
_LOCK_RESOURCE: Final = (
    "SELECT generation, body, created_at, updated_at FROM resources "
    "WHERE kind = %s AND namespace = %s AND name = %s FOR NO KEY UPDATE"
)
_INSERT_SESSION: Final = (
    f"INSERT INTO sessions ({SESSION_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
    f"ON CONFLICT DO NOTHING RETURNING {SESSION_COLS}"
)
_SELECT_SESSION: Final = f"SELECT {SESSION_COLS} FROM sessions WHERE id = %s"
_NO_USAGE: Final = Usage()


class RunTaken(Exception):
    """The run's id or idempotency key was taken by a run committed meanwhile (the
    store rolls back and looks it up: :meth:`Ops.existing_run`)."""


def blob_lock_sql(shared: bool) -> str:
    """Taking the blob table's advisory lock: shared by writers that refer to blobs,
    exclusive for gc's sweep, so gc never deletes a blob a write is about to use."""
    return f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}(%s)"


class Ops:
    """Run, event, session and resource operations (coroutines of a borrowed connection)."""

    def __init__(self, inline_limit: int, blob_lock: int) -> None:
        """Payloads over ``inline_limit`` encoded bytes become blobs, written under the
        advisory lock ``blob_lock``."""
        self.inline_limit = inline_limit
        self.blob_lock = blob_lock

    # --- helpers ---------------------------------------------------------------
    async def _insert_events(
        self, conn: Conn, pk: int, seq: int, events: Sequence[EventDraft]
    ) -> int:
        limit = self.inline_limit
        rows: list[tuple[int, int, str, int | None, float, bytes | None, bytes | None]] = []
        blobs: dict[bytes, bytes] = {}
        for e in events:
            seq += 1
            data = dumps(e.data)
            if len(data) > limit:
                digest = hashlib.sha256(data).digest()
                blobs[digest] = data
                rows.append((pk, seq, e.type, e.step, e.ts, None, digest))
            else:
                rows.append((pk, seq, e.type, e.step, e.ts, data, None))
        if blobs:
            await execute(conn, blob_lock_sql(shared=True), (self.blob_lock,))
            await execute_many(conn, _INSERT_BLOB, list(blobs.items()))
        await execute_many(conn, _INSERT_EVENT, rows)
        return seq

    async def _index_tool_calls(
        self,
        conn: Conn,
        pk: int,
        seq: int,
        namespace: str,
        session_id: str | None,
        events: Sequence[EventDraft],
    ) -> None:
        """Add the ``tool.call`` events after ``seq`` to the quota table."""
        rows = [
            (pk, n, namespace, session_id, toolset, e.ts)
            for n, e in enumerate(events, seq + 1)
            if e.type == _TOOL_CALL and isinstance(toolset := e.data.get("toolset"), str)
        ]
        if rows:
            await execute_many(conn, _INSERT_TOOL_CALL, rows)

    # --- resources -------------------------------------------------------------
    async def put_resource(
        self,
        conn: Conn,
        kind: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        now: float,
        audit: AuditDraft | None = None,
    ) -> ResourceRecord:
        key = (kind, namespace, name)
        encoded = dumps_str(body)
        row = None
        while row is None:  # again if the row that conflicted was deleted meanwhile
            inserted = await fetch_one(conn, _INSERT_RESOURCE, (*key, encoded, now, now))
            if inserted is not None:
                if audit is not None:
                    await append_on(
                        conn, audit.namespace or namespace, [resource_entry(audit, now, 1)]
                    )
                return ResourceRecord(kind, namespace, name, 1, loads(encoded), now, now)
            row = await fetch_one(conn, _LOCK_RESOURCE, key)
        generation, stored, created_at, updated_at = row
        stored_body = loads(stored)
        if stored_body == body:
            return ResourceRecord(
                kind, namespace, name, generation, stored_body, created_at, updated_at
            )
        await execute(
            conn,
            "UPDATE resources SET generation = %s, body = %s, updated_at = %s "
            "WHERE kind = %s AND namespace = %s AND name = %s",
            (generation + 1, encoded, now, *key),
        )
        if audit is not None:
            await append_on(
                conn, audit.namespace or namespace, [resource_entry(audit, now, generation + 1)]
            )
        return ResourceRecord(
            kind, namespace, name, generation + 1, loads(encoded), created_at, now
        )

    async def get_resource(
        self, conn: Conn, kind: str, namespace: str, name: str
    ) -> ResourceRecord | None:
        row = await fetch_one(
            conn,
            f"SELECT {_RESOURCE_COLS} FROM resources "
            "WHERE kind = %s AND namespace = %s AND name = %s",
            (kind, namespace, name),
        )
        return None if row is None else resource_record(row)

    async def list_resources(
        self, conn: Conn, kind: str | None, namespace: str | None
    ) -> list[ResourceRecord]:
        where: list[str] = []
        params: list[Any] = []
        if kind is not None:
            where.append("kind = %s")
            params.append(kind)
        if namespace is not None:
            where.append("namespace = %s")
            params.append(namespace)
        sql = f"SELECT {_RESOURCE_COLS} FROM resources"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY kind, namespace, name"
        return [resource_record(r) for r in await fetch_all(conn, sql, params)]

    async def delete_resource(
        self, conn: Conn, kind: str, namespace: str, name: str, audit: AuditDraft | None = None
    ) -> bool:
        deleted = await execute(
            conn,
            "DELETE FROM resources WHERE kind = %s AND namespace = %s AND name = %s",
            (kind, namespace, name),
        )
        if deleted > 0 and audit is not None:
            await append_on(
                conn, audit.namespace or namespace, [resource_entry(audit, time.time(), None)]
            )
        return deleted > 0

    # --- sessions --------------------------------------------------------------
    async def create_session(self, conn: Conn, s: SessionRecord) -> SessionRecord:
        params = (
            s.id, s.namespace, s.created_at, s.parent_session, s.parent_turn, s.next_turn,
            s.principal,
        )  # fmt: skip
        while True:  # again if the session that conflicted was deleted (by gc) meanwhile
            row = await fetch_one(conn, _INSERT_SESSION, params)
            if row is None:
                row = await fetch_one(conn, _SELECT_SESSION, (s.id,))
            if row is not None:
                return session_record(row)

    async def get_session(self, conn: Conn, session_id: str) -> SessionRecord | None:
        row = await fetch_one(conn, _SELECT_SESSION, (session_id,))
        return None if row is None else session_record(row)

    # --- runs ------------------------------------------------------------------
    async def create_run(
        self, conn: Conn, run: NewRun, events: Sequence[EventDraft]
    ) -> tuple[RunRecord, bool]:
        if run.idempotency_key is not None:
            row = await fetch_one(conn, _SELECT_RUN_BY_KEY, (run.namespace, run.idempotency_key))
            if row is not None:
                return run_record(row), False
        turn = None
        if run.session_id is not None:
            # The session's row lock orders concurrent creates: turns are gapless.
            taken = await fetch_one(conn, _TAKE_TURN, (run.session_id,))
            if taken is None:
                raise NotFoundError(f"session {run.session_id!r} does not exist")
            if run.if_session_idle:
                # Under the session's row lock: every run created before is visible.
                busy = await fetch_one(conn, _UNFINISHED_TURN, (run.session_id,))
                if busy is not None:
                    raise SessionBusy(
                        f"session {run.session_id!r} has an unfinished run: {busy[0]} ({busy[1]})",
                        session_id=run.session_id,
                    )
            turn = taken[0]
        finished_at = run.created_at if run.status in TERMINAL_STATUSES else None
        status = "running" if run.lease_owner is not None else run.status
        token = 0 if run.lease_owner is None else 1
        params = (
            run.id,
            run.namespace,
            run.agent,
            status,
            run.created_at,
            run.created_at,
            run.session_id,
            turn,
            finished_at,
            run.idempotency_key,
            run.parent_run,
            run.fork_step,
            len(events),
            run.lease_owner,
            run.lease_expires,
            token,
            run.principal,
            run.lease_ttl_s,
            run.priority,
        )
        inserted = await fetch_one(conn, _INSERT_RUN, params)
        if inserted is None:
            raise RunTaken(run.id)
        if events:
            await self._insert_events(conn, inserted[0], 0, events)
            await append_on(conn, run.namespace, event_entries(events, 0, run.id, run.agent))
        record = RunRecord(
            run.id,
            run.namespace,
            run.agent,
            status,
            run.created_at,
            run.created_at,
            session_id=run.session_id,
            turn=turn,
            finished_at=finished_at,
            idempotency_key=run.idempotency_key,
            parent_run=run.parent_run,
            fork_step=run.fork_step,
            lease_owner=run.lease_owner,
            lease_expires=run.lease_expires,
            lease_token=token,
            last_seq=len(events),
            principal=run.principal,
            priority=run.priority,
        )
        return record, True

    async def existing_run(self, conn: Conn, run: NewRun) -> tuple[RunRecord, bool]:
        """After :class:`RunTaken`: the run with ``run``'s key, else a conflict."""
        if run.idempotency_key is not None:
            row = await fetch_one(conn, _SELECT_RUN_BY_KEY, (run.namespace, run.idempotency_key))
            if row is not None:
                return run_record(row), False
        raise ConflictError(f"run {run.id!r} already exists")

    async def get_run(self, conn: Conn, run_id: str) -> RunRecord | None:
        row = await fetch_one(conn, _SELECT_RUN_BY_ID, (run_id,))
        return None if row is None else run_record(row)

    async def get_run_by_key(self, conn: Conn, namespace: str, key: str) -> RunRecord | None:
        row = await fetch_one(conn, _SELECT_RUN_BY_KEY, (namespace, key))
        return None if row is None else run_record(row)

    async def list_runs(self, conn: Conn, where: RunFilter, limit: int) -> list[RunRecord]:
        query = list_sql(where, limit, "postgresql")
        if query is None:
            return []
        return [run_record(r) for r in await fetch_all(conn, *query)]

    async def count_runs(self, conn: Conn, where: RunFilter) -> int:
        query = count_sql(where, "postgresql")
        if query is None:
            return 0
        row = await fetch_one(conn, *query)
        return 0 if row is None else int(row[0])

    async def append_events(
        self,
        conn: Conn,
        run_id: str,
        events: Sequence[EventDraft],
        expected_seq: int,
        owner: str | None,
        token: int | None,
        update: RunUpdate | None,
    ) -> int:
        row = await fetch_one(conn, _APPEND_CHECK, (run_id,))
        if row is None:
            raise NotFoundError(f"run {run_id!r} does not exist")
        (pk, last_seq, holder, holder_token, status, finished_at, namespace, session_id, cancel,
         agent) = row  # fmt: skip
        if last_seq != expected_seq:
            raise LeaseLost(
                f"run {run_id!r} is at seq {last_seq}, not {expected_seq}: "
                "another writer appended to it"
            )
        check_fence(run_id, holder, holder_token, owner, token)
        if cancel and (update is None or update.status != "cancelled"):
            raise CancelRequested(f"run {run_id!r} is being cancelled: only its end is recorded")
        if events:
            seq = await self._insert_events(conn, pk, last_seq, events)
            # Only appended events: create_run's are copies of calls made elsewhere.
            await self._index_tool_calls(conn, pk, last_seq, namespace, session_id, events)
            # Last of the event writes: the tenant's head stays locked only until commit.
            await append_on(conn, namespace, event_entries(events, last_seq, run_id, agent))
            now = events[-1].ts
        else:
            seq = last_seq
            now = time.time()
        if update is None:
            if events:
                params = {"seq": seq, "now": now, "held": owner is not None, "pk": pk}
                await execute(conn, _BUMP_RUN, params)
            return seq
        ends = update.status in TERMINAL_STATUSES
        if ends and status not in TERMINAL_STATUSES:
            finished_at = now
        elif update.status is not None and not ends:
            finished_at = None
        for reservation_id, actual in update.settles:
            await settle_on(conn, reservation_id, actual, now)
        if ends:
            await release_on(conn, run_id, now)
        usage = update.usage or _NO_USAGE
        await execute(
            conn,
            _UPDATE_RUN,
            {
                "seq": seq,
                "now": now,
                "status": update.status,
                "reason": update.reason,
                "finished_at": finished_at,
                "ends": ends,
                "held": owner is not None,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": usage.cost_usd,
                "model_calls": usage.model_calls,
                "tool_calls": usage.tool_calls,
                "pk": pk,
            },
        )
        return seq

    async def read_events(self, conn: Conn, run_id: str, after_seq: int) -> list[Event]:
        rows = await fetch_all(conn, _SELECT_EVENTS, (after_seq, run_id))
        if not rows:
            raise NotFoundError(f"run {run_id!r} does not exist")
        return [
            Event(seq, type_, loads(data), ts, step)
            for seq, type_, data, ts, step in rows
            if seq is not None
        ]

    # --- quotas ----------------------------------------------------------------
    async def count_tool_calls(
        self, conn: Conn, namespace: str, tool: str, session_id: str | None, since: float | None
    ) -> int:
        sql = "SELECT COUNT(*) FROM tool_calls WHERE namespace = %s AND tool = %s"
        params: list[Any] = [namespace, tool]
        if session_id is not None:
            sql += " AND session_id = %s"
            params.append(session_id)
        if since is not None:
            sql += " AND ts >= %s"
            params.append(since)
        row = await fetch_one(conn, sql, params)
        assert row is not None
        return int(row[0])
