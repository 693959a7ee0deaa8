"""The audit log as both SQL backends write and read it: entries chained into records,
records as rows, and the one listing query.

The backends differ only in how they lock the tenant's head (SQLite's single
writer needs nothing; PostgreSQL locks its row) and in their placeholder; the
numbering, the hashing (:func:`agentrt.observe.audit.seal`), the row layout and
the filters are written once, here. Statements use ``?``; :func:`pg` gives
PostgreSQL's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from agentrt.errors import UsageError
from agentrt.observe.audit import GENESIS, AuditHead, AuditRecord, canonical_body, seal
from agentrt.state.audit import AuditDraft
from agentrt.state.records import EventDraft

__all__ = [
    "COLS",
    "HEAD",
    "INSERT",
    "NAMESPACES",
    "PUT_HEAD",
    "AuditFilter",
    "Entry",
    "audit_record",
    "chain",
    "draft_entries",
    "event_entries",
    "head_of",
    "list_sql",
    "pg",
    "refs_sql",
    "resource_entry",
    "row_of",
    "unrecorded",
    "with_recorded",
]

COLS: Final = (
    "namespace, seq, ts, kind, principal, run_id, agent, event_seq, ref, body, prev_hash, hash"
)
INSERT: Final = f"INSERT INTO audit ({COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
HEAD: Final = "SELECT namespace, seq, hash FROM audit_heads WHERE namespace = ?"
PUT_HEAD: Final = (
    "INSERT INTO audit_heads (namespace, seq, hash) VALUES (?, ?, ?) "
    "ON CONFLICT (namespace) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
)
NAMESPACES: Final = (
    "SELECT namespace FROM audit_heads UNION SELECT DISTINCT namespace FROM audit ORDER BY 1"
)
REFS: Final = "SELECT {cols} FROM audit WHERE namespace = ? AND ref IN ({marks})"


@dataclass(frozen=True, slots=True)
class Entry:
    """A record before it has a number and hashes."""

    kind: str
    principal: str | None
    body_json: str
    ts: float
    run_id: str | None = None
    agent: str | None = None
    event_seq: int | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What :meth:`AuditLog.list_audit <agentrt.state.audit.AuditLog.list_audit>` asked."""

    namespace: str
    principal: str | None = None
    agent: str | None = None
    run_id: str | None = None
    kinds: Sequence[str] | None = None
    since: float | None = None
    until: float | None = None
    after: int | None = None
    before: int | None = None
    newest_first: bool = False
    limit: int = 100


def event_entries(
    events: Sequence[EventDraft], last_seq: int, run_id: str, agent: str | None
) -> list[Entry]:
    """The records the events appended after ``last_seq`` carry, in their order."""
    entries = []
    for seq, e in enumerate(events, last_seq + 1):
        a = e.audit
        if a is not None:
            body = canonical_body(a.body)
            entries.append(Entry(a.kind, a.principal, body, e.ts, run_id, agent, seq, a.ref))
    return entries


def draft_entries(drafts: Iterable[AuditDraft], now: float) -> list[Entry]:
    """Records of drafts appended on their own, at ``now``."""
    return [
        Entry(d.kind, d.principal, canonical_body(d.body), now, d.run_id, d.agent, None, d.ref)
        for d in drafts
    ]


def unrecorded(drafts: Sequence[AuditDraft], recorded: Sequence[AuditRecord]) -> list[AuditDraft]:
    """The drafts to write: those without a ``ref``, and the first of each ``ref`` the
    tenant has not ``recorded``."""
    seen = {r.ref for r in recorded}
    fresh = []
    for d in drafts:
        if d.ref is not None:
            if d.ref in seen:
                continue
            seen.add(d.ref)
        fresh.append(d)
    return fresh


def with_recorded(
    drafts: Sequence[AuditDraft], recorded: Sequence[AuditRecord], written: Sequence[AuditRecord]
) -> list[AuditRecord]:
    """The record of each draft, in the drafts' order: the one ``written`` for it, or the
    one ``recorded`` (or written) before under its ``ref``."""
    by_ref = {r.ref: r for r in recorded}
    out: list[AuditRecord] = []
    new = iter(written)
    for d in drafts:
        if d.ref is not None and d.ref in by_ref:
            out.append(by_ref[d.ref])
            continue
        record = next(new)
        if d.ref is not None:
            by_ref[d.ref] = record
        out.append(record)
    return out


def resource_entry(draft: AuditDraft, now: float, generation: int | None) -> Entry:
    """The record of a resource change: the draft, its body given the ``generation``
    the change made (``None`` for a delete)."""
    body = dict(draft.body) if generation is None else {**draft.body, "generation": generation}
    return Entry(
        draft.kind, draft.principal, canonical_body(body), now, draft.run_id, draft.agent,
        None, draft.ref,
    )  # fmt: skip


def chain(namespace: str, head: AuditHead | None, entries: Sequence[Entry]) -> list[AuditRecord]:
    """``entries`` numbered and hashed after ``head`` (the tenant's chain as it ends)."""
    seq, prev = (0, GENESIS) if head is None else (head.seq, head.hash)
    records = []
    for e in entries:
        seq += 1
        record = seal(
            namespace, seq, e.ts, e.kind, principal=e.principal, run_id=e.run_id,
            agent=e.agent, event_seq=e.event_seq, ref=e.ref, body_json=e.body_json,
            prev_hash=prev,
        )  # fmt: skip
        records.append(record)
        prev = record.hash
    return records


def row_of(r: AuditRecord) -> tuple[Any, ...]:
    """A record as the values of :data:`INSERT`."""
    return (
        r.namespace, r.seq, r.ts, r.kind, r.principal, r.run_id, r.agent, r.event_seq,
        r.ref, r.body_json, r.prev_hash, r.hash,
    )  # fmt: skip


def audit_record(row: Sequence[Any]) -> AuditRecord:
    """A row of :data:`COLS` as a record."""
    ns, seq, ts, kind, principal, run_id, agent, event_seq, ref, body, prev, digest = row
    return AuditRecord(
        ns, int(seq), float(ts), kind, principal, run_id, agent,
        None if event_seq is None else int(event_seq), ref, body, prev, digest,
    )  # fmt: skip


def head_of(row: Sequence[Any] | None) -> AuditHead | None:
    """A row of :data:`HEAD` as the head (``None``: no row, or a head made for a chain
    that has no record yet)."""
    if row is None or int(row[1]) == 0:
        return None
    return AuditHead(row[0], int(row[1]), row[2])


def refs_sql(count: int) -> str:
    """The stored records of ``count`` refs of one tenant."""
    return REFS.format(cols=COLS, marks=", ".join("?" * count))


def list_sql(f: AuditFilter, dialect: str) -> tuple[str, list[Any]] | None:
    """The query of ``f`` and its parameters; ``None`` when nothing can match."""
    if f.limit < 1:
        raise UsageError(f"limit must be at least 1, not {f.limit}")
    if f.kinds is not None and not f.kinds:
        return None
    # SQLite keeps no statistics: a run's records are few, so its index must serve
    # them; a unary + keeps the other columns off theirs.
    off = "+" if f.run_id is not None and dialect == "sqlite" else ""
    given: list[tuple[str, Any]] = [
        (f"{off}principal = ?", f.principal), (f"{off}agent = ?", f.agent),
        ("run_id = ?", f.run_id), (f"{off}ts >= ?", f.since), (f"{off}ts < ?", f.until),
        ("seq > ?", f.after), ("seq < ?", f.before),
    ]  # fmt: skip
    where = ["namespace = ?"]
    params: list[Any] = [f.namespace]
    for clause, value in given:
        if value is not None:
            where.append(clause)
            params.append(value)
    if f.kinds is not None:
        where.append(f"{off}kind IN ({', '.join('?' * len(f.kinds))})")
        params.extend(f.kinds)
    order = " DESC" if f.newest_first else ""
    sql = f"SELECT {COLS} FROM audit WHERE {' AND '.join(where)} ORDER BY seq{order} LIMIT ?"
    params.append(f.limit)
    return (sql if dialect == "sqlite" else pg(sql)), params


def pg(sql: str) -> str:
    """A statement of this module with PostgreSQL's placeholders."""
    return sql.replace("?", "%s")
