"""The SQLite store's audit log: records chained onto a tenant's head, listed, its head;
and the store's audit methods, which :class:`~agentrt.state.sqlite.SqliteStore` takes.

The operations run on the writer thread inside the transaction of their batch, like
:mod:`agentrt.state._sqlite_ops` (which calls :func:`append_on` for the records its
appends and resource changes carry). SQLite has one writer at a time and a write
transaction begins ``IMMEDIATE``, so reading the head and writing after it never
interleave with another append, in this process or another.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, TypeVar

from agentrt.observe.audit import AuditHead, AuditRecord
from agentrt.state._audit_sql import (
    HEAD,
    INSERT,
    NAMESPACES,
    PUT_HEAD,
    AuditFilter,
    Entry,
    audit_record,
    chain,
    draft_entries,
    head_of,
    list_sql,
    refs_sql,
    row_of,
    unrecorded,
    with_recorded,
)
from agentrt.state._sqlite_part import SqlitePart
from agentrt.state._sqlite_writer import READ, WRITE
from agentrt.state.audit import AuditDraft

if TYPE_CHECKING:
    from agentrt.state._sqlite_ops import Ops

__all__ = ["AuditMethods", "append_on"]

T = TypeVar("T")

_DIALECT: Final = "sqlite"


def append_on(
    conn: sqlite3.Connection, namespace: str, entries: Sequence[Entry]
) -> list[AuditRecord]:
    """Chain ``entries`` after the tenant's head; write them and the new head."""
    if not entries:
        return []
    head = head_of(conn.execute(HEAD, (namespace,)).fetchone())
    records = chain(namespace, head, entries)
    conn.executemany(INSERT, [row_of(r) for r in records])
    last = records[-1]
    conn.execute(PUT_HEAD, (namespace, last.seq, last.hash))
    return records


def _append_drafts(
    conn: sqlite3.Connection, namespace: str, drafts: Sequence[AuditDraft], now: float
) -> list[AuditRecord]:
    refs = sorted({d.ref for d in drafts if d.ref is not None})
    recorded: list[AuditRecord] = []
    if refs:
        rows = conn.execute(refs_sql(len(refs)), (namespace, *refs))
        recorded = [audit_record(row) for row in rows]
    written = append_on(conn, namespace, draft_entries(unrecorded(drafts, recorded), now))
    return with_recorded(drafts, recorded, written)


def _list(conn: sqlite3.Connection, f: AuditFilter) -> list[AuditRecord]:
    query = list_sql(f, _DIALECT)
    return [] if query is None else [audit_record(row) for row in conn.execute(*query)]


def _head(conn: sqlite3.Connection, namespace: str) -> AuditHead | None:
    return head_of(conn.execute(HEAD, (namespace,)).fetchone())


def _namespaces(conn: sqlite3.Connection) -> list[str]:
    return [ns for (ns,) in conn.execute(NAMESPACES)]


class AuditMethods(SqlitePart):
    """The audit methods of :class:`~agentrt.state.sqlite.SqliteStore`."""

    if TYPE_CHECKING:

        @property
        def _ops(self) -> Ops: ...

    async def append_audit(
        self, namespace: str, drafts: Sequence[AuditDraft], *, now: float
    ) -> list[AuditRecord]:
        """Append ``drafts`` to the tenant's chain in one write; a ``ref`` recorded
        already gets its stored record back (see :class:`~agentrt.state.audit.AuditLog`)."""
        return await self._submit(
            WRITE, _append_drafts, self._ops.conn, namespace, tuple(drafts), now
        )

    async def list_audit(
        self,
        namespace: str,
        *,
        principal: str | None = None,
        agent: str | None = None,
        run_id: str | None = None,
        kinds: Sequence[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int | None = None,
        before: int | None = None,
        newest_first: bool = False,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The tenant's records matching every filter given, in number order."""
        f = AuditFilter(
            namespace, principal, agent, run_id, None if kinds is None else tuple(kinds),
            since, until, after, before, newest_first, limit,
        )  # fmt: skip
        return await self._submit(READ, _list, self._ops.conn, f)

    async def audit_head(self, namespace: str) -> AuditHead | None:
        """Where the tenant's chain ends, or ``None``."""
        return await self._submit(READ, _head, self._ops.conn, namespace)

    async def audit_namespaces(self) -> list[str]:
        """The tenants that have an audit log, in order."""
        return await self._submit(READ, _namespaces, self._ops.conn)
