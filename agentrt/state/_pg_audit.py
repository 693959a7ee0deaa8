"""The PostgreSQL store's audit log: records chained onto a tenant's locked head, listed,
its head; and the store's audit methods, which :class:`~agentrt.state.postgres.PostgresStore`
takes.

An append first locks the tenant's head row: one upsert that makes it on a first
append and otherwise locks it (``ON CONFLICT DO UPDATE``), returning the last seq and
hash. Concurrent appends of the tenant, from any process, wait there for the one
before to commit and then read what it wrote (READ COMMITTED reads the latest
version of a row it locks), so the numbers follow one another and the chain never
forks; nothing checks then inserts unlocked. The records and the new head are then
one statement. The lock is held to the end of the caller's transaction:
:mod:`agentrt.state._pg_ops` takes it last, after the run's own writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from agentrt.observe.audit import GENESIS, AuditHead, AuditRecord
from agentrt.state._audit_sql import (
    COLS,
    HEAD,
    NAMESPACES,
    AuditFilter,
    Entry,
    audit_record,
    chain,
    draft_entries,
    head_of,
    list_sql,
    pg,
    refs_sql,
    row_of,
    unrecorded,
    with_recorded,
)
from agentrt.state._pg_rows import Conn, execute, fetch_all, fetch_one
from agentrt.state.audit import AuditDraft

if TYPE_CHECKING:
    from agentrt.state._pg_runner import Runner

__all__ = ["AuditMethods", "append_on"]

_DIALECT: Final = "postgresql"
_LOCK_HEAD: Final = (
    "INSERT INTO audit_heads AS h (namespace, seq, hash) VALUES (%s, 0, %s) "
    "ON CONFLICT (namespace) DO UPDATE SET seq = h.seq RETURNING namespace, seq, hash"
)
_ROW: Final = "(" + ", ".join(["%s"] * len(COLS.split(", "))) + ")"
_WRITE: Final = (
    "WITH head AS (UPDATE audit_heads SET seq = %s, hash = %s WHERE namespace = %s) "
    f"INSERT INTO audit ({COLS}) VALUES {{rows}}"
)
_HEAD: Final = pg(HEAD)
_NAMESPACES: Final = pg(NAMESPACES)


async def lock_head(conn: Conn, namespace: str) -> AuditHead | None:
    """Lock the tenant's head (making it on a first append) and return it."""
    return head_of(await fetch_one(conn, _LOCK_HEAD, (namespace, GENESIS)))


async def append_on(conn: Conn, namespace: str, entries: Sequence[Entry]) -> list[AuditRecord]:
    """Lock the tenant's head, chain ``entries`` after it; write them and the new head."""
    if not entries:
        return []
    return await _write(conn, namespace, await lock_head(conn, namespace), entries)


async def _write(
    conn: Conn, namespace: str, head: AuditHead | None, entries: Sequence[Entry]
) -> list[AuditRecord]:
    records = chain(namespace, head, entries)
    last = records[-1]
    params: list[Any] = [last.seq, last.hash, namespace]
    for record in records:
        params.extend(row_of(record))
    await execute(conn, _WRITE.format(rows=", ".join([_ROW] * len(records))), params)
    return records


async def _append_drafts(
    conn: Conn, namespace: str, drafts: Sequence[AuditDraft], now: float
) -> list[AuditRecord]:
    if not drafts:
        return []
    head = await lock_head(conn, namespace)  # refs are looked up under the lock
    refs = sorted({d.ref for d in drafts if d.ref is not None})
    recorded: list[AuditRecord] = []
    if refs:
        rows = await fetch_all(conn, pg(refs_sql(len(refs))), (namespace, *refs))
        recorded = [audit_record(row) for row in rows]
    entries = draft_entries(unrecorded(drafts, recorded), now)
    written = await _write(conn, namespace, head, entries) if entries else []
    return with_recorded(drafts, recorded, written)


async def _list(conn: Conn, f: AuditFilter) -> list[AuditRecord]:
    query = list_sql(f, _DIALECT)
    return [] if query is None else [audit_record(row) for row in await fetch_all(conn, *query)]


async def _head(conn: Conn, namespace: str) -> AuditHead | None:
    return head_of(await fetch_one(conn, _HEAD, (namespace,)))


async def _namespaces(conn: Conn) -> list[str]:
    return [ns for (ns,) in await fetch_all(conn, _NAMESPACES)]


def _nothing(_: object) -> tuple[str, ...]:
    return ()  # an audit write wakes no run's watch


class AuditMethods:
    """The audit methods of :class:`~agentrt.state.postgres.PostgresStore`."""

    if TYPE_CHECKING:
        _run: Runner

    async def append_audit(
        self, namespace: str, drafts: Sequence[AuditDraft], *, now: float
    ) -> list[AuditRecord]:
        """Append ``drafts`` to the tenant's chain in one write; a ``ref`` recorded
        already gets its stored record back (see :class:`~agentrt.state.audit.AuditLog`)."""
        return await self._run.write(_nothing, _append_drafts, namespace, tuple(drafts), now)

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
        return await self._run.read(_list, f)

    async def audit_head(self, namespace: str) -> AuditHead | None:
        """Where the tenant's chain ends, or ``None``."""
        return await self._run.read(_head, namespace)

    async def audit_namespaces(self) -> list[str]:
        """The tenants that have an audit log, in order."""
        return await self._run.read(_namespaces)
