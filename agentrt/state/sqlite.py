"""The embedded default store: one SQLite database file.

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` by
default. A committed write survives the process crashing or being killed at any
moment, which is what agentrt promises. It may be lost if the machine loses
power before the OS flushes its buffers; for that, open the store with
``durability="full"`` (``synchronous=FULL``), at the cost of one fsync per
commit.

Concurrency: the stdlib ``sqlite3`` connection lives on one dedicated thread.
Coroutines put work on a queue and await a future. The thread takes every
operation queued at that moment and runs them all in one transaction (each
write inside its own SAVEPOINT, so one failing operation does not undo the
others), commits once, then wakes the waiting coroutines with a single
``call_soon_threadsafe`` per batch. Under load this turns many small appends
into one commit (group commit). Reads run on the same thread: they are short
and the runtime's hot path is writes. A second read connection on its own
thread was measured no faster (append + get_run + read_events from 50 tasks):
the GIL serialises the Python half of both threads anyway.

Storage: event payloads are orjson-encoded. A payload larger than the inline
limit is stored once in the ``blobs`` table under its SHA-256 and the event row
keeps only the 32-byte digest, so a large tool result recurring across events,
runs and forks costs its size once. The database is created with
``auto_vacuum=INCREMENTAL`` so :meth:`SqliteStore.gc` gives space back to the
file system.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar
from urllib.parse import parse_qsl, unquote

import platformdirs

from agentrt._json import dumps, dumps_str, loads
from agentrt.errors import ConflictError, LeaseLost, NotFoundError, UsageError
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

__all__ = [
    "DEFAULT_INLINE_LIMIT",
    "MIGRATIONS",
    "Durability",
    "SqliteStore",
    "default_store_path",
]

T = TypeVar("T")

Durability = Literal["normal", "full"]

DEFAULT_INLINE_LIMIT: Final = 1024
"""Encoded event payloads larger than this many bytes go to the blob table."""

_MEMORY: Final = ":memory:"
_MAX_BATCH: Final = 512  # bounds the latency one commit adds to the ops queued behind it
_JOURNAL_SIZE_LIMIT: Final = 8 * 1024 * 1024

# --- schema --------------------------------------------------------------------

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE resources (
                kind TEXT NOT NULL,
                namespace TEXT NOT NULL,
                name TEXT NOT NULL,
                generation INTEGER NOT NULL,
                body TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                PRIMARY KEY (kind, namespace, name)
            )""",
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                namespace TEXT NOT NULL,
                created_at REAL NOT NULL,
                parent_session TEXT,
                parent_turn INTEGER,
                next_turn INTEGER NOT NULL DEFAULT 0
            ) WITHOUT ROWID""",
            # parent_run is informational (no FK): gc may delete the parent of a fork.
            """CREATE TABLE runs (
                pk INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                namespace TEXT NOT NULL,
                agent TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                session_id TEXT REFERENCES sessions (id),
                turn INTEGER,
                reason TEXT,
                finished_at REAL,
                idempotency_key TEXT,
                parent_run TEXT,
                fork_step INTEGER,
                lease_owner TEXT,
                lease_expires REAL,
                cancel_requested INTEGER NOT NULL DEFAULT 0,
                last_seq INTEGER NOT NULL DEFAULT 0,
                input_tokens INTEGER NOT NULL DEFAULT 0,
                output_tokens INTEGER NOT NULL DEFAULT 0,
                cost_usd REAL NOT NULL DEFAULT 0,
                model_calls INTEGER NOT NULL DEFAULT 0,
                tool_calls INTEGER NOT NULL DEFAULT 0,
                UNIQUE (namespace, idempotency_key)
            )""",
            # list_runs(session_id=...) and the sessions FK lookups; NULLs never collide.
            "CREATE UNIQUE INDEX runs_session_turn ON runs (session_id, turn)",
            # list_runs: newest first.
            "CREATE INDEX runs_created ON runs (created_at)",
            # claim_runs: only active runs are indexed, so it stays small.
            "CREATE INDEX runs_claimable ON runs (created_at) "
            "WHERE status IN ('queued', 'running')",
            # gc: only finished runs are indexed.
            "CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL",
            """CREATE TABLE events (
                run_pk INTEGER NOT NULL REFERENCES runs (pk),
                seq INTEGER NOT NULL,
                type TEXT NOT NULL,
                step INTEGER,
                ts REAL NOT NULL,
                data BLOB,
                blob BLOB,
                PRIMARY KEY (run_pk, seq)
            ) WITHOUT ROWID""",
            # gc: finding unreferenced blobs; only events with a blob are indexed.
            "CREATE INDEX events_blob ON events (blob) WHERE blob IS NOT NULL",
            """CREATE TABLE blobs (
                hash BLOB PRIMARY KEY,
                data BLOB NOT NULL
            ) WITHOUT ROWID""",
        ],
    ),
]
"""Append-only list of ``(version, statements)``; never edit a released entry."""

# --- SQL -----------------------------------------------------------------------

_RUN_COLS = (
    "id, namespace, agent, status, created_at, updated_at, session_id, turn, reason, "
    "finished_at, idempotency_key, parent_run, fork_step, lease_owner, lease_expires, "
    "cancel_requested, last_seq, input_tokens, output_tokens, cost_usd, model_calls, tool_calls"
)
_SELECT_RUN_BY_ID = f"SELECT {_RUN_COLS} FROM runs WHERE id = ?"
_SELECT_RUN_BY_PK = f"SELECT {_RUN_COLS} FROM runs WHERE pk = ?"
_SELECT_RUN_BY_KEY = f"SELECT {_RUN_COLS} FROM runs WHERE namespace = ? AND idempotency_key = ?"
_INSERT_RUN = (
    "INSERT INTO runs (id, namespace, agent, status, created_at, updated_at, session_id, turn, "
    "finished_at, idempotency_key, parent_run, fork_step, last_seq) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_APPEND_CHECK = "SELECT pk, last_seq, lease_owner, status, finished_at FROM runs WHERE id = ?"
_BUMP_RUN = "UPDATE runs SET last_seq = ?, updated_at = ? WHERE pk = ?"
_UPDATE_RUN = (
    "UPDATE runs SET last_seq = ?, updated_at = ?, status = COALESCE(?, status), "
    "reason = COALESCE(?, reason), finished_at = ?, input_tokens = input_tokens + ?, "
    "output_tokens = output_tokens + ?, cost_usd = cost_usd + ?, "
    "model_calls = model_calls + ?, tool_calls = tool_calls + ? WHERE pk = ?"
)
_INSERT_EVENT = (
    "INSERT INTO events (run_pk, seq, type, step, ts, data, blob) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_BLOB = "INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)"
_SELECT_EVENTS = (
    "SELECT e.seq, e.type, COALESCE(e.data, b.data), e.ts, e.step FROM events AS e "
    "LEFT JOIN blobs AS b ON b.hash = e.blob WHERE e.run_pk = ? AND e.seq > ? ORDER BY e.seq"
)
_SELECT_PK = "SELECT pk FROM runs WHERE id = ?"
_LEASE_CHECK = "SELECT pk, status, lease_owner, lease_expires FROM runs WHERE id = ?"
_TAKE_LEASE = (
    "UPDATE runs SET lease_owner = ?, lease_expires = ?, updated_at = ?, "
    "status = CASE status WHEN 'queued' THEN 'running' ELSE status END WHERE pk = ?"
)
_RENEW_LEASE = "UPDATE runs SET lease_expires = ? WHERE id = ? AND lease_owner = ?"
_RELEASE_LEASE = (
    "UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE id = ? AND lease_owner = ?"
)
_CLAIMABLE = (
    "SELECT pk FROM runs WHERE status IN ('queued', 'running') "
    "AND (lease_expires IS NULL OR lease_expires <= ?) ORDER BY created_at, pk LIMIT ?"
)
_CLAIM = (
    "UPDATE runs SET status = 'running', lease_owner = ?, lease_expires = ?, updated_at = ? "
    "WHERE pk = ?"
)
_SESSION_COLS = "id, namespace, created_at, parent_session, parent_turn, next_turn"
_RESOURCE_COLS = "kind, namespace, name, generation, body, created_at, updated_at"

# Job kinds: reads and writes share a transaction per batch; RAW jobs run alone,
# outside any transaction (connect, PRAGMAs that cannot run inside one).
_READ: Final = 0
_WRITE: Final = 1
_RAW: Final = 2
_STOP: Final = 3

_Job = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...], int]
_Outcome = tuple["asyncio.Future[Any]", BaseException | None, Any]

_NO_USAGE: Final = Usage()


def default_store_path() -> Path:
    """The database used when no store URL is configured.

    Returns:
        ``agentrt.db`` in the user's data directory for agentrt (per-OS, via
        ``platformdirs``).
    """
    return Path(platformdirs.user_data_dir("agentrt")) / "agentrt.db"


def _run_record(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        bool(row[15]),
        row[16],
        Usage(row[17], row[18], row[19], row[20], row[21]),
    )


def _resource_record(row: Sequence[Any]) -> ResourceRecord:
    return ResourceRecord(row[0], row[1], row[2], row[3], loads(row[4]), row[5], row[6])


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to the newest version, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        latest = MIGRATIONS[-1][0]
        if current > latest:
            raise UsageError(
                f"the database has schema version {current}, but this agentrt only knows "
                f"versions up to {latest}; upgrade agentrt to open it"
            )
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, time.time()))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class _Db:
    """The store's operations as plain functions of one connection (writer thread only)."""

    def __init__(self, conn: sqlite3.Connection, inline_limit: int) -> None:
        self.conn = conn
        self.inline_limit = inline_limit
        self._list_sql: dict[tuple[bool, bool, int], str] = {}

    # --- helpers ---------------------------------------------------------------
    def _run_by_pk(self, pk: int) -> RunRecord:
        return _run_record(self.conn.execute(_SELECT_RUN_BY_PK, (pk,)).fetchone())

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

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def script(self, sql: str) -> None:
        self.conn.executescript(sql)

    # --- resources -------------------------------------------------------------
    def put_resource(
        self, kind: str, namespace: str, name: str, body: dict[str, Any], now: float
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
                f"INSERT INTO resources ({_RESOURCE_COLS}) VALUES (?, ?, ?, 1, ?, ?, ?)",
                (*key, encoded, now, now),
            )
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
        return ResourceRecord(
            kind, namespace, name, generation + 1, loads(encoded), created_at, now
        )

    def get_resource(self, kind: str, namespace: str, name: str) -> ResourceRecord | None:
        row = self.conn.execute(
            f"SELECT {_RESOURCE_COLS} FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
            (kind, namespace, name),
        ).fetchone()
        return None if row is None else _resource_record(row)

    def list_resources(self, kind: str | None, namespace: str | None) -> list[ResourceRecord]:
        where = []
        params = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if namespace is not None:
            where.append("namespace = ?")
            params.append(namespace)
        sql = f"SELECT {_RESOURCE_COLS} FROM resources"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY kind, namespace, name"
        return [_resource_record(r) for r in self.conn.execute(sql, params)]

    def delete_resource(self, kind: str, namespace: str, name: str) -> bool:
        cur = self.conn.execute(
            "DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
            (kind, namespace, name),
        )
        return cur.rowcount > 0

    # --- sessions --------------------------------------------------------------
    def create_session(self, s: SessionRecord) -> SessionRecord:
        self.conn.execute(
            f"INSERT OR IGNORE INTO sessions ({_SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
            (s.id, s.namespace, s.created_at, s.parent_session, s.parent_turn, s.next_turn),
        )
        stored = self.get_session(s.id)
        assert stored is not None
        return stored

    def get_session(self, session_id: str) -> SessionRecord | None:
        row = self.conn.execute(
            f"SELECT {_SESSION_COLS} FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        return None if row is None else SessionRecord(*row)

    # --- runs ------------------------------------------------------------------
    def create_run(self, run: NewRun, events: Sequence[EventDraft]) -> tuple[RunRecord, bool]:
        conn = self.conn
        if run.idempotency_key is not None:
            row = conn.execute(_SELECT_RUN_BY_KEY, (run.namespace, run.idempotency_key)).fetchone()
            if row is not None:
                return _run_record(row), False
        turn = None
        if run.session_id is not None:
            srow = conn.execute(
                "SELECT next_turn FROM sessions WHERE id = ?", (run.session_id,)
            ).fetchone()
            if srow is None:
                raise NotFoundError(f"session {run.session_id!r} does not exist")
            turn = srow[0]
            conn.execute(
                "UPDATE sessions SET next_turn = next_turn + 1 WHERE id = ?", (run.session_id,)
            )
        finished_at = run.created_at if run.status in TERMINAL_STATUSES else None
        last_seq = len(events)
        try:
            cur = conn.execute(
                _INSERT_RUN,
                (
                    run.id,
                    run.namespace,
                    run.agent,
                    run.status,
                    run.created_at,
                    run.created_at,
                    run.session_id,
                    turn,
                    finished_at,
                    run.idempotency_key,
                    run.parent_run,
                    run.fork_step,
                    last_seq,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"run {run.id!r} already exists") from exc
        if events:
            pk = cur.lastrowid
            assert pk is not None
            self._insert_events(pk, 0, events)
        record = RunRecord(
            run.id,
            run.namespace,
            run.agent,
            run.status,
            run.created_at,
            run.created_at,
            session_id=run.session_id,
            turn=turn,
            finished_at=finished_at,
            idempotency_key=run.idempotency_key,
            parent_run=run.parent_run,
            fork_step=run.fork_step,
            last_seq=last_seq,
        )
        return record, True

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self.conn.execute(_SELECT_RUN_BY_ID, (run_id,)).fetchone()
        return None if row is None else _run_record(row)

    def list_runs(
        self,
        namespace: str | None,
        session_id: str | None,
        statuses: Sequence[str] | None,
        limit: int,
    ) -> list[RunRecord]:
        n_statuses = -1 if statuses is None else len(statuses)
        key = (namespace is not None, session_id is not None, n_statuses)
        sql = self._list_sql.get(key)
        if sql is None:
            where = []
            if namespace is not None:
                where.append("namespace = ?")
            if session_id is not None:
                where.append("session_id = ?")
            if statuses is not None:
                where.append(f"status IN ({', '.join('?' * len(statuses))})")
            sql = f"SELECT {_RUN_COLS} FROM runs"
            if where:
                sql += " WHERE " + " AND ".join(where)
            order = "turn" if session_id is not None else "created_at DESC, pk DESC"
            sql += f" ORDER BY {order} LIMIT ?"
            self._list_sql[key] = sql
        params: list[Any] = []
        if namespace is not None:
            params.append(namespace)
        if session_id is not None:
            params.append(session_id)
        if statuses is not None:
            params.extend(statuses)
        params.append(limit)
        return [_run_record(r) for r in self.conn.execute(sql, params)]

    def append_events(
        self,
        run_id: str,
        events: Sequence[EventDraft],
        expected_seq: int,
        owner: str | None,
        update: RunUpdate | None,
    ) -> int:
        conn = self.conn
        row = conn.execute(_APPEND_CHECK, (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id!r} does not exist")
        pk, last_seq, lease_owner, status, finished_at = row
        if last_seq != expected_seq:
            raise LeaseLost(
                f"run {run_id!r} is at seq {last_seq}, not {expected_seq}: "
                "another writer appended to it"
            )
        if owner is not None and lease_owner is not None and lease_owner != owner:
            raise LeaseLost(f"run {run_id!r} is leased to {lease_owner!r}, not {owner!r}")
        if events:
            seq = self._insert_events(pk, last_seq, events)
            now = events[-1].ts
        else:
            seq = last_seq
            now = time.time()
        if update is None:
            if events:
                conn.execute(_BUMP_RUN, (seq, now, pk))
            return seq
        new_status = update.status
        if new_status is None:
            pass
        elif new_status in TERMINAL_STATUSES:
            if status not in TERMINAL_STATUSES:
                finished_at = now
        else:
            finished_at = None
        usage = update.usage or _NO_USAGE
        conn.execute(
            _UPDATE_RUN,
            (
                seq,
                now,
                new_status,
                update.reason,
                finished_at,
                usage.input_tokens,
                usage.output_tokens,
                usage.cost_usd,
                usage.model_calls,
                usage.tool_calls,
                pk,
            ),
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

    # --- leases and cancellation -----------------------------------------------
    def acquire_lease(
        self, run_id: str, owner: str, ttl_s: float, now: float, force: bool
    ) -> RunRecord | None:
        row = self.conn.execute(_LEASE_CHECK, (run_id,)).fetchone()
        if row is None:
            return None
        pk, status, lease_owner, lease_expires = row
        if status in TERMINAL_STATUSES:
            return None
        held_by_other = (
            lease_owner is not None
            and lease_owner != owner
            and lease_expires is not None
            and lease_expires > now
        )
        if held_by_other and not force:
            return None
        self.conn.execute(_TAKE_LEASE, (owner, now + ttl_s, now, pk))
        return self._run_by_pk(pk)

    def renew_lease(self, run_id: str, owner: str, ttl_s: float, now: float) -> bool:
        return self.conn.execute(_RENEW_LEASE, (now + ttl_s, run_id, owner)).rowcount > 0

    def release_lease(self, run_id: str, owner: str) -> None:
        self.conn.execute(_RELEASE_LEASE, (run_id, owner))

    def claim_runs(self, owner: str, ttl_s: float, now: float, limit: int) -> list[RunRecord]:
        pks = [r[0] for r in self.conn.execute(_CLAIMABLE, (now, limit))]
        if not pks:
            return []
        expires = now + ttl_s
        self.conn.executemany(_CLAIM, [(owner, expires, now, pk) for pk in pks])
        return [self._run_by_pk(pk) for pk in pks]

    def request_cancel(self, run_id: str) -> RunRecord:
        row = self.conn.execute(
            "SELECT pk, status, cancel_requested FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id!r} does not exist")
        pk, status, requested = row
        if not requested and status not in TERMINAL_STATUSES:
            self.conn.execute("UPDATE runs SET cancel_requested = 1 WHERE pk = ?", (pk,))
        return self._run_by_pk(pk)

    # --- maintenance -----------------------------------------------------------
    def gc(self, finished_before: float) -> GcResult:
        conn = self.conn
        pks = conn.execute(
            "SELECT pk FROM runs WHERE finished_at < ?", (finished_before,)
        ).fetchall()
        events = 0
        if pks:
            events = conn.executemany("DELETE FROM events WHERE run_pk = ?", pks).rowcount
            conn.executemany("DELETE FROM runs WHERE pk = ?", pks)
        # Only sessions older than the cutoff: a fresh session may be about to get its
        # first run.
        sessions = conn.execute(
            "DELETE FROM sessions WHERE created_at < ? AND NOT EXISTS "
            "(SELECT 1 FROM runs WHERE runs.session_id = sessions.id)",
            (finished_before,),
        ).rowcount
        blobs = conn.execute(
            "DELETE FROM blobs WHERE NOT EXISTS "
            "(SELECT 1 FROM events WHERE events.blob = blobs.hash)"
        ).rowcount
        return GcResult(runs=len(pks), events=events, blobs=blobs, sessions=sessions)


def _settle(outcomes: list[_Outcome]) -> None:
    """Resolve futures on their event loop (the waiter may have been cancelled)."""
    for fut, exc, value in outcomes:
        if fut.done():
            continue
        if exc is None:
            fut.set_result(value)
        else:
            fut.set_exception(exc)


class _Writer:
    """The thread that owns the connection and runs queued jobs in group commits."""

    def __init__(self, target: str, synchronous: str, inline_limit: int, timeout: float) -> None:
        self.target = target
        self.synchronous = synchronous
        self.inline_limit = inline_limit
        self.timeout = timeout
        self.queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.conn: sqlite3.Connection | None = None
        self.stopping = False
        self.commits = 0  # write transactions committed; lets tests see batching happen
        self.thread = threading.Thread(target=self._main, name="agentrt-sqlite", daemon=True)

    # --- jobs that run on the thread -------------------------------------------
    def connect(self) -> _Db:
        target = self.target
        if target != _MEMORY:
            file = Path(target).expanduser()
            file.parent.mkdir(parents=True, exist_ok=True)
            target = str(file)
        conn = sqlite3.connect(
            target,
            timeout=self.timeout,
            isolation_level=None,
            cached_statements=256,
        )
        try:
            # auto_vacuum only takes effect before the first table is created.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if self.target != _MEMORY and str(mode).lower() != "wal":
                raise UsageError(
                    f"could not switch {self.target} to WAL mode (got {mode!r}); "
                    "put the database on a local file system"
                )
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return _Db(conn, self.inline_limit)

    def shutdown(self) -> None:
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        try:
            conn.execute("PRAGMA optimize")
        finally:
            conn.close()

    # --- the loop --------------------------------------------------------------
    def _main(self) -> None:
        get = self.queue.get
        get_nowait = self.queue.get_nowait
        while True:
            batch = [get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            if self.stopping:
                for i, job in enumerate(batch):
                    if job[3] == _STOP:
                        self._run_safely(batch[:i])
                        self._stop(job, batch[i + 1 :])
                        return
            self._run_safely(batch)

    def _run_safely(self, batch: list[_Job]) -> None:
        try:
            self._run_batch(batch)
        except Exception as exc:  # a bug here must not strand the waiters
            self._deliver([(j[0], exc, None) for j in batch])

    def _stop(self, job: _Job, rest: list[_Job]) -> None:
        outcomes: list[_Outcome] = []
        try:
            self.shutdown()
        except Exception as exc:
            outcomes.append((job[0], exc, None))
        else:
            outcomes.append((job[0], None, None))
        # The store refuses new jobs once stopping, so this only catches stragglers.
        while True:
            try:
                rest.append(self.queue.get_nowait())
            except queue.Empty:
                break
        closed = UsageError("the store is closed")
        outcomes.extend((j[0], closed, None) for j in rest)
        self._deliver(outcomes)

    def _run_batch(self, batch: list[_Job]) -> None:
        if not batch:
            return
        raw = [j for j in batch if j[3] == _RAW]
        outcomes: list[_Outcome]
        if raw:
            txn = [j for j in batch if j[3] != _RAW]
            outcomes = self._transaction(txn) if txn else []
            for fut, fn, args, _ in raw:
                try:
                    outcomes.append((fut, None, fn(*args)))
                except Exception as exc:
                    outcomes.append((fut, exc, None))
        else:
            outcomes = self._transaction(batch)
        self._deliver(outcomes)

    def _transaction(self, jobs: list[_Job]) -> list[_Outcome]:
        conn = self.conn
        if conn is None:
            closed = UsageError("the store is closed")
            return [(j[0], closed, None) for j in jobs]
        write = False
        for job in jobs:
            if job[3] == _WRITE:
                write = True
                break
        outcomes: list[_Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            if len(jobs) == 1:
                fut, fn, args, _ = jobs[0]
                try:
                    outcomes.append((fut, None, fn(*args)))
                except Exception as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    return [(fut, exc, None)]
            else:
                for fut, fn, args, kind in jobs:
                    if kind != _WRITE:
                        try:
                            outcomes.append((fut, None, fn(*args)))
                        except Exception as exc:
                            if not conn.in_transaction:
                                raise
                            outcomes.append((fut, exc, None))
                        continue
                    conn.execute("SAVEPOINT op")
                    try:
                        value = fn(*args)
                    except Exception as exc:
                        if not conn.in_transaction:
                            raise  # SQLite rolled the whole transaction back (e.g. disk full)
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        outcomes.append((fut, exc, None))
                    else:
                        conn.execute("RELEASE op")
                        outcomes.append((fut, None, value))
            conn.execute("COMMIT")
        except Exception as exc:
            # Nothing in this transaction is durable: every job in it fails.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [(j[0], exc, None) for j in jobs]
        if write:
            self.commits += 1
        return outcomes

    def _deliver(self, outcomes: list[_Outcome]) -> None:
        if not outcomes:
            return
        loop = outcomes[0][0].get_loop()
        groups: dict[asyncio.AbstractEventLoop, list[_Outcome]] | None = None
        for item in outcomes:
            if item[0].get_loop() is not loop:
                groups = {}
                for o in outcomes:
                    groups.setdefault(o[0].get_loop(), []).append(o)
                break
        for target, items in (groups or {loop: outcomes}).items():
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                target.call_soon_threadsafe(_settle, items)


class _Opening:
    """What :meth:`SqliteStore.from_url` returns: await it, or ``async with`` it."""

    def __init__(self, path: str, kwargs: dict[str, Any]) -> None:
        self._path = path
        self._kwargs = kwargs
        self._store: SqliteStore | None = None

    def __await__(self) -> Generator[Any, None, SqliteStore]:
        return SqliteStore.open(self._path, **self._kwargs).__await__()

    async def __aenter__(self) -> SqliteStore:
        self._store = await SqliteStore.open(self._path, **self._kwargs)
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()


def _parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split ``sqlite:///abs/path.db?durability=full`` into a path and open() options."""
    prefix = "sqlite://"
    if not url.startswith(prefix):
        raise UsageError(f"not a SQLite URL: {url!r}; expected sqlite:///absolute/path.db")
    rest, _, query = url[len(prefix) :].partition("?")
    if rest in ("", "/:memory:"):
        path = _MEMORY
    elif rest.startswith("/"):
        path = unquote(rest)
        if len(path) > 2 and path[2] == ":" and path[1].isalpha():
            path = path[1:]  # sqlite:///C:/dir/x.db on Windows
    else:
        raise UsageError(f"bad SQLite URL {url!r}: use sqlite:///absolute/path.db (three slashes)")
    kwargs: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "durability":
            kwargs["durability"] = value
        elif key == "inline_limit" and value.isdigit():
            kwargs["inline_limit"] = int(value)
        else:
            raise UsageError(
                f"unknown option {key}={value!r} in store URL {url!r}; "
                "known: durability=normal|full, inline_limit=<bytes>"
            )
    return path, kwargs


class SqliteStore:
    """The embedded :class:`~agentrt.state.base.Store`: one SQLite file in WAL mode.

    Open it with :meth:`open` or :meth:`from_url`; close it with :meth:`close`
    or ``async with``. One instance serves any number of concurrent coroutines;
    several processes may open the same file (SQLite serialises their writes).

    ``durability="normal"`` (the default, ``synchronous=NORMAL``) keeps every
    committed write across a crash or kill of the process. Surviving a power
    loss or OS crash needs ``durability="full"`` (``synchronous=FULL``).
    """

    def __init__(
        self,
        path: str,
        *,
        durability: Durability = "normal",
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        busy_timeout_s: float = 5.0,
    ) -> None:
        """Prepare a store; it is usable after :meth:`open` connects it.

        Prefer :meth:`open`, which does both.
        """
        if durability not in ("normal", "full"):
            raise UsageError(f"durability must be 'normal' or 'full', not {durability!r}")
        if inline_limit < 0:
            raise UsageError(f"inline_limit must be >= 0, not {inline_limit}")
        self.path = path
        self.durability: Durability = durability
        self.inline_limit = inline_limit
        self._writer = _Writer(
            path, "FULL" if durability == "full" else "NORMAL", inline_limit, busy_timeout_s
        )
        self._put = self._writer.queue.put
        self._db: _Db | None = None
        self._closed = True
        self._closing: asyncio.Future[None] | None = None

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        durability: Durability = "normal",
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        busy_timeout_s: float = 5.0,
    ) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and migrate its schema.

        Args:
            path: The database file; parent directories are created. ``":memory:"``
                gives a private in-memory database (for tests).
            durability: ``"normal"`` survives process crashes; ``"full"`` also
                power loss, with an fsync per commit.
            inline_limit: Encoded event payloads larger than this many bytes are
                stored once in the blob table.
            busy_timeout_s: How long to wait for another process's write lock.

        Returns:
            The open store.

        Raises:
            UsageError: The database has a newer schema than this code knows, or
                cannot use WAL mode.
        """
        store = cls(
            str(path),
            durability=durability,
            inline_limit=inline_limit,
            busy_timeout_s=busy_timeout_s,
        )
        await store._start()
        return store

    @classmethod
    def from_url(cls, url: str) -> _Opening:
        """Open the store a ``sqlite:///`` URL names; await the result or ``async with`` it.

        ``sqlite:///abs/path.db`` is an absolute path and ``sqlite:///:memory:``
        an in-memory database (tests only). Query options: ``durability=full``,
        ``inline_limit=<bytes>``.

        Args:
            url: The store URL.

        Returns:
            An awaitable async context manager yielding the open store and
            closing it on exit.

        Raises:
            UsageError: The URL is not a valid SQLite URL.
        """
        path, kwargs = _parse_url(url)
        return _Opening(path, kwargs)

    async def _start(self) -> None:
        self._writer.thread.start()
        self._closed = False
        try:
            self._db = await self._submit(_RAW, self._writer.connect)
        except BaseException:
            await self.close()
            raise

    def _submit(self, kind: int, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closed:
            raise UsageError("the store is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._put((fut, fn, args, kind))
        return fut

    @property
    def _ops(self) -> _Db:
        db = self._db
        if db is None:
            raise UsageError("the store is not open")
        return db

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SqliteStore {self.path!r} {state}>"

    async def close(self) -> None:
        """Finish queued work, then close the connection. Idempotent."""
        if self._closing is None:
            if not self._writer.thread.is_alive():
                self._closed = True
                return
            self._closed = True
            self._writer.stopping = True
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._closing = fut
            self._put((fut, self._writer.shutdown, (), _STOP))
        await asyncio.shield(self._closing)

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one SQL statement outside any transaction (diagnostics and tests)."""
        return await self._submit(_RAW, self._ops.query, sql, params)

    # --- resources -------------------------------------------------------------
    async def put_resource(
        self, kind: str, namespace: str, name: str, body: dict[str, Any], *, now: float
    ) -> ResourceRecord:
        """Insert or update a resource.

        The generation is 1 on insert, unchanged when ``body`` equals the stored
        body (nothing is written then), and incremented otherwise.
        """
        return await self._submit(_WRITE, self._ops.put_resource, kind, namespace, name, body, now)

    async def get_resource(self, kind: str, namespace: str, name: str) -> ResourceRecord | None:
        """The resource, or ``None``."""
        return await self._submit(_READ, self._ops.get_resource, kind, namespace, name)

    async def list_resources(
        self, kind: str | None = None, namespace: str | None = None
    ) -> list[ResourceRecord]:
        """Resources filtered by kind and namespace, ordered by (kind, namespace, name)."""
        return await self._submit(_READ, self._ops.list_resources, kind, namespace)

    async def delete_resource(self, kind: str, namespace: str, name: str) -> bool:
        """Delete a resource; ``True`` if it existed."""
        return await self._submit(_WRITE, self._ops.delete_resource, kind, namespace, name)

    # --- sessions --------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> SessionRecord:
        """Create a session; if the id exists already, return the stored one unchanged."""
        return await self._submit(_WRITE, self._ops.create_session, session)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session, or ``None``."""
        return await self._submit(_READ, self._ops.get_session, session_id)

    # --- runs ------------------------------------------------------------------
    async def create_run(
        self, run: NewRun, events: Sequence[EventDraft] = ()
    ) -> tuple[RunRecord, bool]:
        """Create a run and append its first events in one transaction.

        With ``run.session_id`` the session must exist (else ``NotFoundError``);
        the run takes its next turn. With ``run.idempotency_key`` matching a run
        of the same namespace, nothing is written and ``(existing, False)`` is
        returned. A run id that exists already raises ``ConflictError``.
        """
        return await self._submit(_WRITE, self._ops.create_run, run, events)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None``."""
        return await self._submit(_READ, self._ops.get_run, run_id)

    async def list_runs(
        self,
        *,
        namespace: str | None = None,
        session_id: str | None = None,
        statuses: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs, newest first; with ``session_id``, ordered by turn ascending instead."""
        if statuses is not None and not statuses:
            return []
        return await self._submit(
            _READ, self._ops.list_runs, namespace, session_id, statuses, limit
        )

    async def append_events(
        self,
        run_id: str,
        events: Sequence[EventDraft],
        *,
        expected_seq: int,
        owner: str | None = None,
        update: RunUpdate | None = None,
    ) -> int:
        """Append events after ``expected_seq`` and apply ``update``, atomically.

        The run's ``updated_at`` (and ``finished_at`` when ``update`` makes it
        terminal) is the ``ts`` of the last appended event, or the wall clock
        when no events are given.

        Returns:
            The new last sequence number.

        Raises:
            LeaseLost: The run's last seq is not ``expected_seq``, or ``owner``
                is given and another owner holds the lease.
            NotFoundError: The run does not exist.
        """
        return await self._submit(
            _WRITE, self._ops.append_events, run_id, events, expected_seq, owner, update
        )

    async def read_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """Events with ``seq > after_seq``, in order, with payloads resolved.

        Raises:
            NotFoundError: The run does not exist.
        """
        return await self._submit(_READ, self._ops.read_events, run_id, after_seq)

    # --- leases and cancellation -----------------------------------------------
    async def acquire_lease(
        self, run_id: str, owner: str, ttl_s: float, *, now: float, force: bool = False
    ) -> RunRecord | None:
        """Take the run's lease if free, expired, already ``owner``'s, or ``force``.

        A lease is live while ``now < lease_expires``. Only non-terminal runs
        can be leased; a ``queued`` run becomes ``running``. Returns the updated
        run, or ``None`` if another live owner holds it or the run is finished
        or unknown.
        """
        return await self._submit(_WRITE, self._ops.acquire_lease, run_id, owner, ttl_s, now, force)

    async def renew_lease(self, run_id: str, owner: str, ttl_s: float, *, now: float) -> bool:
        """Extend the lease to ``now + ttl_s``; ``False`` if ``owner`` no longer holds it."""
        return await self._submit(_WRITE, self._ops.renew_lease, run_id, owner, ttl_s, now)

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Give the lease up (no-op unless ``owner`` holds it)."""
        await self._submit(_WRITE, self._ops.release_lease, run_id, owner)

    async def claim_runs(
        self, owner: str, ttl_s: float, *, now: float, limit: int = 10
    ) -> list[RunRecord]:
        """Lease up to ``limit`` runs that are queued or running with no live lease.

        Oldest first. Each claimed run is ``running`` and leased to ``owner``.
        Two concurrent callers never claim the same run: claims are serialised
        by SQLite's single writer.
        """
        return await self._submit(_WRITE, self._ops.claim_runs, owner, ttl_s, now, limit)

    async def request_cancel(self, run_id: str) -> RunRecord:
        """Mark the run for cancellation; the owning worker ends it. Returns the run.

        A finished run is returned unchanged.

        Raises:
            NotFoundError: The run does not exist.
        """
        return await self._submit(_WRITE, self._ops.request_cancel, run_id)

    # --- maintenance ------------------------------------------------------------
    async def gc(self, *, finished_before: float) -> GcResult:
        """Delete runs that finished before the given time and what only they used.

        Removes their events, sessions created before the cutoff that have no
        runs left, and blobs no event references; then returns the freed pages
        to the file system (incremental vacuum and a WAL checkpoint).
        """
        result = await self._submit(_WRITE, self._ops.gc, finished_before)
        # Must run outside the deleting transaction: inside it frees nothing.
        # executescript because execute() steps incremental_vacuum only once.
        await self._submit(
            _RAW,
            self._ops.script,
            "PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);",
        )
        return result
