"""The SQLite store's operations: each Store method as SQL on one connection.

They run on the writer thread, inside the transaction it opens for their batch
(``query`` and ``script`` outside any); none begins or commits one itself.
Event payloads larger than the inline limit go to the ``blobs`` table under
their SHA-256.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Final

from agentrt._json import dumps, dumps_str, loads
from agentrt.errors import CancelRequested, ConflictError, LeaseLost, NotFoundError, SessionBusy
from agentrt.state._audit_sql import event_entries, resource_entry
from agentrt.state._fence import check_fence, granted_token
from agentrt.state._rows import (
    RESOURCE_COLS,
    RUN_COLS,
    SESSION_COLS,
    resource_record,
    run_record,
    session_record,
)
from agentrt.state._run_query import RunFilter, count_sql, list_sql
from agentrt.state._sqlite_audit import append_on
from agentrt.state._sqlite_ledger import release_on, settle_on
from agentrt.state.audit import AuditDraft
from agentrt.state.base import (
    TERMINAL_STATUSES,
    Event,
    EventDraft,
    GcResult,
    NewRun,
    ResourceRecord,
    RunRecord,
    RunUpdate,
    SessionRecord,
    Usage,
)

__all__ = ["Ops"]

_SELECT_RUN_BY_ID = f"SELECT {RUN_COLS} FROM runs WHERE id = ?"
_SELECT_RUN_BY_PK = f"SELECT {RUN_COLS} FROM runs WHERE pk = ?"
_SELECT_RUN_BY_KEY = f"SELECT {RUN_COLS} FROM runs WHERE namespace = ? AND idempotency_key = ?"
_INSERT_RUN = (
    "INSERT INTO runs (id, namespace, agent, status, created_at, updated_at, session_id, turn, "
    "finished_at, idempotency_key, parent_run, fork_step, last_seq, lease_owner, lease_expires, "
    "lease_token, principal, lease_ttl_s, priority) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_APPEND_CHECK = (
    "SELECT pk, last_seq, lease_owner, lease_token, status, finished_at, namespace, "
    "session_id, cancel_requested, agent FROM runs WHERE id = ?"
)
# A write of the lease's holder extends the lease: proof enough that it is alive.
_EXTENDED = (
    "CASE WHEN :held AND lease_ttl_s IS NOT NULL AND lease_expires IS NOT NULL "
    "THEN MAX(lease_expires, :now + lease_ttl_s) ELSE lease_expires END"
)
_BUMP_RUN = (
    f"UPDATE runs SET last_seq = :seq, updated_at = :now, lease_expires = {_EXTENDED} "
    "WHERE pk = :pk"
)
# With a status, the reason is replaced (NULL clears it); without, NULL keeps it.
_UPDATE_RUN = (
    "UPDATE runs SET last_seq = :seq, updated_at = :now, status = COALESCE(:status, status), "
    "reason = CASE WHEN :status IS NULL THEN COALESCE(:reason, reason) ELSE :reason END, "
    f"finished_at = :finished_at, lease_expires = {_EXTENDED}, "
    "input_tokens = input_tokens + :input_tokens, "
    "output_tokens = output_tokens + :output_tokens, cost_usd = cost_usd + :cost_usd, "
    "model_calls = model_calls + :model_calls, tool_calls = tool_calls + :tool_calls "
    "WHERE pk = :pk"
)
# A finished run has no owner: ending it releases its lease in the same transaction.
_END_LEASE = "UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE pk = ?"
_INSERT_EVENT = (
    "INSERT INTO events (run_pk, seq, type, step, ts, data, blob) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_BLOB = "INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)"
_SELECT_EVENTS = (
    "SELECT e.seq, e.type, COALESCE(e.data, b.data), e.ts, e.step FROM events AS e "
    "LEFT JOIN blobs AS b ON b.hash = e.blob WHERE e.run_pk = ? AND e.seq > ? ORDER BY e.seq"
)
_SELECT_PK = "SELECT pk FROM runs WHERE id = ?"
# The session's first unfinished run, if any (index runs_session_turn).
_UNFINISHED_TURN = (
    "SELECT id, status FROM runs WHERE session_id = ? AND finished_at IS NULL ORDER BY turn LIMIT 1"
)
_INSERT_TOOL_CALL = (
    "INSERT INTO tool_calls (run_pk, seq, namespace, session_id, tool, ts) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# The engine's intent event (agentrt.engine.events.TOOL_CALL); the store layer does
# not import the engine.
_TOOL_CALL: Final = "tool.call"
_LEASE_CHECK = "SELECT pk, status, lease_owner, lease_expires, lease_token FROM runs WHERE id = ?"
_TAKE_LEASE = (
    "UPDATE runs SET lease_owner = ?, lease_expires = ?, lease_ttl_s = ?, lease_token = ?, "
    "updated_at = ?, "
    "status = CASE status WHEN 'queued' THEN 'running' ELSE status END WHERE pk = ?"
)
_CANCEL_REQUESTS = (
    "SELECT id FROM runs WHERE cancel_requested = 1 AND finished_at IS NULL AND id IN ({})"
)
# A NULL token matches any grant: the token is checked only when the caller gives one.
_RENEW_LEASE = (
    "UPDATE runs SET lease_expires = ?, lease_ttl_s = ? WHERE id = ? AND lease_owner = ? "
    "AND (? IS NULL OR lease_token = ?)"
)
# The ids come as one JSON array: one statement however many leases there are.
_RENEW_LEASES = (
    "UPDATE runs SET lease_expires = ?, lease_ttl_s = ? WHERE lease_owner = ? "
    "AND id IN (SELECT value FROM json_each(?)) RETURNING id"
)
_RELEASE_LEASE = (
    "UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE id = ? AND lease_owner = ? "
    "AND (? IS NULL OR lease_token = ?)"
)
_CLAIMABLE = (
    "SELECT pk FROM runs WHERE status IN ('queued', 'running') "
    "AND (lease_expires IS NULL OR lease_expires <= ?) ORDER BY created_at, pk LIMIT ?"
)
_CLAIM = (
    "UPDATE runs SET status = 'running', lease_owner = ?, lease_expires = ?, lease_ttl_s = ?, "
    "updated_at = ?, lease_token = lease_token + 1 WHERE pk = ?"
)

_NO_USAGE: Final = Usage()


def _run_row(
    run: NewRun, status: str, turn: int | None, finished_at: float | None, last_seq: int,
    token: int,
) -> tuple[Any, ...]:  # fmt: skip
    """The values of :data:`_INSERT_RUN` for ``run``."""
    return (run.id, run.namespace, run.agent, status, run.created_at, run.created_at,
            run.session_id, turn, finished_at, run.idempotency_key, run.parent_run,
            run.fork_step, last_seq, run.lease_owner, run.lease_expires, token, run.principal,
            run.lease_ttl_s, run.priority)  # fmt: skip


class Ops:
    """The store's operations as plain functions of one connection (writer thread only).

    Each public method does the work of the :class:`~agentrt.state.sqlite.SqliteStore`
    method of the same name, with the same results and errors.
    """

    def __init__(self, conn: sqlite3.Connection, inline_limit: int) -> None:
        """Wrap ``conn``; payloads over ``inline_limit`` encoded bytes become blobs."""
        self.conn = conn
        self.inline_limit = inline_limit

    # --- helpers ---------------------------------------------------------------
    def _run_by_pk(self, pk: int) -> RunRecord:
        return run_record(self.conn.execute(_SELECT_RUN_BY_PK, (pk,)).fetchone())

    def _insert_events(self, pk: int, seq: int, events: Sequence[EventDraft]) -> int:
        limit = self.inline_limit
        rows: list[tuple[int, int, str, int | None, float, bytes | None, bytes | None]] = []
        blobs: list[tuple[bytes, bytes]] = []
        for e in events:
            seq += 1
            data = dumps(e.data)
            if len(data) > limit:
                digest = hashlib.sha256(data).digest()
                blobs.append((digest, data))
                rows.append((pk, seq, e.type, e.step, e.ts, None, digest))
            else:
                rows.append((pk, seq, e.type, e.step, e.ts, data, None))
        if blobs:
            self.conn.executemany(_INSERT_BLOB, blobs)
        self.conn.executemany(_INSERT_EVENT, rows)
        return seq

    def _index_tool_calls(
        self,
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
            self.conn.executemany(_INSERT_TOOL_CALL, rows)

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one statement and return all its rows."""
        return self.conn.execute(sql, params).fetchall()

    def script(self, sql: str) -> None:
        """Run several statements (``executescript``), e.g. PRAGMAs that step repeatedly."""
        self.conn.executescript(sql)

    # --- resources -------------------------------------------------------------
    def put_resource(
        self,
        kind: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        now: float,
        audit: AuditDraft | None = None,
    ) -> ResourceRecord:
        conn = self.conn
        key = (kind, namespace, name)
        row = conn.execute(
            "SELECT generation, body, created_at, updated_at FROM resources "
            "WHERE kind = ? AND namespace = ? AND name = ?",
            key,
        ).fetchone()
        encoded = dumps_str(body)
        if row is None:
            conn.execute(
                f"INSERT INTO resources ({RESOURCE_COLS}) VALUES (?, ?, ?, 1, ?, ?, ?)",
                (*key, encoded, now, now),
            )
            if audit is not None:
                append_on(conn, audit.namespace or namespace, [resource_entry(audit, now, 1)])
            return ResourceRecord(kind, namespace, name, 1, loads(encoded), now, now)
        generation, stored, created_at, updated_at = row
        stored_body = loads(stored)
        if stored_body == body:
            return ResourceRecord(
                kind, namespace, name, generation, stored_body, created_at, updated_at
            )
        conn.execute(
            "UPDATE resources SET generation = ?, body = ?, updated_at = ? "
            "WHERE kind = ? AND namespace = ? AND name = ?",
            (generation + 1, encoded, now, *key),
        )
        if audit is not None:
            append_on(
                conn, audit.namespace or namespace, [resource_entry(audit, now, generation + 1)]
            )
        return ResourceRecord(
            kind, namespace, name, generation + 1, loads(encoded), created_at, now
        )

    def get_resource(self, kind: str, namespace: str, name: str) -> ResourceRecord | None:
        row = self.conn.execute(
            f"SELECT {RESOURCE_COLS} FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
            (kind, namespace, name),
        ).fetchone()
        return None if row is None else resource_record(row)

    def list_resources(self, kind: str | None, namespace: str | None) -> list[ResourceRecord]:
        where = []
        params = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if namespace is not None:
            where.append("namespace = ?")
            params.append(namespace)
        sql = f"SELECT {RESOURCE_COLS} FROM resources"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY kind, namespace, name"
        return [resource_record(r) for r in self.conn.execute(sql, params)]

    def delete_resource(
        self, kind: str, namespace: str, name: str, audit: AuditDraft | None = None
    ) -> bool:
        cur = self.conn.execute(
            "DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
            (kind, namespace, name),
        )
        if cur.rowcount > 0 and audit is not None:
            append_on(
                self.conn, audit.namespace or namespace, [resource_entry(audit, time.time(), None)]
            )
        return cur.rowcount > 0

    # --- sessions --------------------------------------------------------------
    def create_session(self, s: SessionRecord) -> SessionRecord:
        row = (s.id, s.namespace, s.created_at, s.parent_session, s.parent_turn, s.next_turn)
        self.conn.execute(
            f"INSERT OR IGNORE INTO sessions ({SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*row, s.principal),
        )
        stored = self.get_session(s.id)
        assert stored is not None
        return stored

    def get_session(self, session_id: str) -> SessionRecord | None:
        row = self.conn.execute(
            f"SELECT {SESSION_COLS} FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        return None if row is None else session_record(row)

    # --- runs ------------------------------------------------------------------
    def create_run(self, run: NewRun, events: Sequence[EventDraft]) -> tuple[RunRecord, bool]:
        conn = self.conn
        if run.idempotency_key is not None:
            row = conn.execute(_SELECT_RUN_BY_KEY, (run.namespace, run.idempotency_key)).fetchone()
            if row is not None:
                return run_record(row), False
        turn = None
        if run.session_id is not None:
            srow = conn.execute(
                "SELECT next_turn FROM sessions WHERE id = ?", (run.session_id,)
            ).fetchone()
            if srow is None:
                raise NotFoundError(f"session {run.session_id!r} does not exist")
            if run.if_session_idle:
                busy = conn.execute(_UNFINISHED_TURN, (run.session_id,)).fetchone()
                if busy is not None:
                    raise SessionBusy(
                        f"session {run.session_id!r} has an unfinished run: {busy[0]} ({busy[1]})",
                        session_id=run.session_id,
                    )
            turn = srow[0]
            conn.execute(
                "UPDATE sessions SET next_turn = next_turn + 1 WHERE id = ?", (run.session_id,)
            )
        finished_at = run.created_at if run.status in TERMINAL_STATUSES else None
        last_seq = len(events)
        status = "running" if run.lease_owner is not None else run.status
        token = 0 if run.lease_owner is None else 1
        try:
            cur = conn.execute(
                _INSERT_RUN,
                _run_row(run, status, turn, finished_at, last_seq, token),
            )
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"run {run.id!r} already exists") from exc
        if events:
            pk = cur.lastrowid
            assert pk is not None
            self._insert_events(pk, 0, events)
            append_on(conn, run.namespace, event_entries(events, 0, run.id, run.agent))
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
            last_seq=last_seq,
            principal=run.principal,
            priority=run.priority,
        )
        return record, True

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self.conn.execute(_SELECT_RUN_BY_ID, (run_id,)).fetchone()
        return None if row is None else run_record(row)

    def get_run_by_key(self, namespace: str, key: str) -> RunRecord | None:
        row = self.conn.execute(_SELECT_RUN_BY_KEY, (namespace, key)).fetchone()
        return None if row is None else run_record(row)

    def list_runs(self, where: RunFilter, limit: int) -> list[RunRecord]:
        query = list_sql(where, limit, "sqlite")
        if query is None:
            return []
        return [run_record(r) for r in self.conn.execute(*query)]

    def count_runs(self, where: RunFilter) -> int:
        query = count_sql(where, "sqlite")
        return 0 if query is None else int(self.conn.execute(*query).fetchone()[0])

    def append_events(
        self,
        run_id: str,
        events: Sequence[EventDraft],
        expected_seq: int,
        owner: str | None,
        token: int | None,
        update: RunUpdate | None,
    ) -> int:
        conn = self.conn
        row = conn.execute(_APPEND_CHECK, (run_id,)).fetchone()
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
            seq = self._insert_events(pk, last_seq, events)
            # Only appended events: create_run's are copies of calls made elsewhere.
            self._index_tool_calls(pk, last_seq, namespace, session_id, events)
            append_on(conn, namespace, event_entries(events, last_seq, run_id, agent))
            now = events[-1].ts
        else:
            seq = last_seq
            now = time.time()
        if update is None:
            if events:
                conn.execute(
                    _BUMP_RUN, {"seq": seq, "now": now, "held": owner is not None, "pk": pk}
                )
            return seq
        new_status = update.status
        if new_status is None:
            pass
        elif new_status in TERMINAL_STATUSES:
            if status not in TERMINAL_STATUSES:
                finished_at = now
            conn.execute(_END_LEASE, (pk,))
        else:
            finished_at = None
        for reservation_id, actual in update.settles:
            settle_on(conn, reservation_id, actual, now)
        if new_status in TERMINAL_STATUSES:
            release_on(conn, run_id, now)
        usage = update.usage or _NO_USAGE
        conn.execute(
            _UPDATE_RUN,
            {
                "seq": seq,
                "now": now,
                "status": new_status,
                "reason": update.reason,
                "finished_at": finished_at,
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

    def read_events(self, run_id: str, after_seq: int) -> list[Event]:
        row = self.conn.execute(_SELECT_PK, (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id!r} does not exist")
        return [
            Event(seq, type_, loads(data), ts, step)
            for seq, type_, data, ts, step in self.conn.execute(_SELECT_EVENTS, (row[0], after_seq))
        ]

    # --- quotas ----------------------------------------------------------------
    def count_tool_calls(
        self, namespace: str, tool: str, session_id: str | None, since: float | None
    ) -> int:
        sql = "SELECT COUNT(*) FROM tool_calls WHERE namespace = ? AND tool = ?"
        params: list[Any] = [namespace, tool]
        if session_id is not None:
            sql += " AND session_id = ?"
            params.append(session_id)
        if since is not None:
            sql += " AND ts >= ?"
            params.append(since)
        return int(self.conn.execute(sql, params).fetchone()[0])

    # --- leases and cancellation -----------------------------------------------
    def acquire_lease(
        self, run_id: str, owner: str, ttl_s: float, now: float, replacing: str | None
    ) -> RunRecord | None:
        row = self.conn.execute(_LEASE_CHECK, (run_id,)).fetchone()
        if row is None:
            return None
        pk, status, lease_owner, lease_expires, lease_token = row
        if status in TERMINAL_STATUSES:
            return None
        held_by_other = (
            lease_owner is not None
            and lease_owner != owner
            and lease_expires is not None
            and lease_expires > now
        )
        if held_by_other and (replacing is None or lease_owner != replacing):
            return None
        token = granted_token(lease_owner, lease_expires, lease_token, owner, now)
        self.conn.execute(_TAKE_LEASE, (owner, now + ttl_s, ttl_s, token, now, pk))
        return self._run_by_pk(pk)

    def renew_lease(
        self, run_id: str, owner: str, ttl_s: float, now: float, token: int | None
    ) -> bool:
        params = (now + ttl_s, ttl_s, run_id, owner, token, token)
        return self.conn.execute(_RENEW_LEASE, params).rowcount > 0

    def renew_leases(self, run_ids: list[str], owner: str, ttl_s: float, now: float) -> set[str]:
        rows = self.conn.execute(_RENEW_LEASES, (now + ttl_s, ttl_s, owner, dumps_str(run_ids)))
        return {row[0] for row in rows}

    def release_lease(self, run_id: str, owner: str, token: int | None) -> None:
        self.conn.execute(_RELEASE_LEASE, (run_id, owner, token, token))

    def claim_runs(self, owner: str, ttl_s: float, now: float, limit: int) -> list[RunRecord]:
        pks = [r[0] for r in self.conn.execute(_CLAIMABLE, (now, limit))]
        if not pks:
            return []
        expires = now + ttl_s
        self.conn.executemany(_CLAIM, [(owner, expires, ttl_s, now, pk) for pk in pks])
        return [self._run_by_pk(pk) for pk in pks]

    def cancel_requests(self, run_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(run_ids), 500):  # under SQLite's bound-parameter limit
            chunk = list(run_ids[start : start + 500])
            sql = _CANCEL_REQUESTS.format(", ".join("?" * len(chunk)))
            found.update(row[0] for row in self.conn.execute(sql, chunk))
        return found

    def request_cancel(
        self, run_id: str, cause: str | None, by: str | None, now: float | None
    ) -> RunRecord:
        row = self.conn.execute(
            "SELECT pk, status, cancel_requested FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id!r} does not exist")
        pk, status, requested = row
        if not requested and status not in TERMINAL_STATUSES:
            self.conn.execute(
                "UPDATE runs SET cancel_requested = 1, cancel_cause = ?, cancel_by = ?, "
                "cancel_at = ? WHERE pk = ?",
                (cause, by, time.time() if now is None else now, pk),
            )
        return self._run_by_pk(pk)

    # --- maintenance -----------------------------------------------------------
    def gc(self, finished_before: float) -> GcResult:
        conn = self.conn
        found = conn.execute(
            "SELECT pk, id FROM runs WHERE finished_at < ?", (finished_before,)
        ).fetchall()
        pks = [(pk,) for pk, _ in found]
        events = 0
        if pks:
            events = conn.executemany("DELETE FROM events WHERE run_pk = ?", pks).rowcount
            conn.executemany("DELETE FROM tool_calls WHERE run_pk = ?", pks)
            conn.executemany("DELETE FROM run_blobs WHERE run_pk = ?", pks)
            conn.executemany("DELETE FROM runs WHERE pk = ?", pks)
            conn.executemany(
                "DELETE FROM budget_reservations WHERE run_id = ? AND settled_at IS NOT NULL",
                [(run_id,) for _, run_id in found],
            )
        # Only sessions older than the cutoff: a fresh session may be about to get its
        # first run.
        sessions = conn.execute(
            "DELETE FROM sessions WHERE created_at < ? AND NOT EXISTS "
            "(SELECT 1 FROM runs WHERE runs.session_id = sessions.id)",
            (finished_before,),
        ).rowcount
        blobs = conn.execute(
            "DELETE FROM blobs WHERE NOT EXISTS "
            "(SELECT 1 FROM events WHERE events.blob = blobs.hash) AND NOT EXISTS "
            "(SELECT 1 FROM run_blobs WHERE run_blobs.hash = blobs.hash)"
        ).rowcount
        return GcResult(
            run_ids=tuple(run_id for _, run_id in found),
            events=events,
            blobs=blobs,
            sessions=sessions,
        )
