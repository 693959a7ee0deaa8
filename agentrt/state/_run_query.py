"""How both SQL backends list and count runs: one filter, one ``WHERE`` clause, one order.

SQLite and PostgreSQL differ only in their placeholder and in how a list of
statuses is bound; the filters, the orders (newest first by ``(created_at,
id)``, last updated first by ``(updated_at, id)``, or by turn in a session) and
the cursor are written once, here. Every filter is served by an index of
migration 0008 (or the session and parent indexes before it), and a tenant's
runs of one agent last updated first by migration 0010's, so a page of a
tenant's runs reads about a page of rows, however many runs the store holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from agentrt.errors import UsageError
from agentrt.state._rows import RUN_COLS
from agentrt.state.records import RunCursor, RunOrder

__all__ = ["RunFilter", "count_sql", "list_sql"]

Dialect = Literal["sqlite", "postgresql"]

_SORTED: Final[dict[RunOrder, str]] = {
    "newest": "created_at DESC, id DESC",
    "updated": "updated_at DESC, id DESC",
    "turn": "turn",
}


@dataclass(frozen=True, slots=True)
class RunFilter:
    """What :meth:`Store.list_runs <agentrt.state.base.Store.list_runs>` (or
    ``count_runs``, without cursor and order) was asked for."""

    namespace: str | None = None
    session_id: str | None = None
    parent: str | None = None
    statuses: Sequence[str] | None = None
    agent: str | None = None
    principal: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    updated_after: float | None = None
    before: RunCursor | None = None
    order: RunOrder | None = None

    def sorted_by(self) -> RunOrder:
        """The order the runs come in: as asked, else a session's by turn, else newest."""
        order = self.order or ("turn" if self.session_id is not None else "newest")
        if order == "turn" and self.session_id is None:
            raise UsageError("runs are in turn order only within a session: give session_id")
        if order == "turn" and self.before is not None:
            raise UsageError("a cursor (before=) pages runs listed newest or updated, not by turn")
        return order


def _where(f: RunFilter, dialect: Dialect, order: RunOrder) -> tuple[list[str], list[Any]]:
    """The conditions of ``f`` but its cursor, and their parameters."""
    mark = "?" if dialect == "sqlite" else "%s"
    # A session's or a parent's runs are few: their index serves them, not a tenant's.
    # SQLite has no statistics to know it; a unary + keeps a column off its indexes.
    few = f.session_id is not None or f.parent is not None
    off = "+" if few and dialect == "sqlite" else ""
    # An agent's runs last updated first come from the one index in that order; a
    # status or principal index would sort them all before the first page.
    by_agent = "+" if order == "updated" and f.agent is not None and dialect == "sqlite" else off
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        (f"{off}namespace", f.namespace),
        ("session_id", f.session_id),
        ("parent_run" if f.session_id is None else f"{off}parent_run", f.parent),
        (f"{off}agent", f.agent),
        (f"{by_agent}principal", f.principal),
    ):
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(value)
    if f.statuses is not None:
        if dialect == "sqlite":
            where.append(f"{by_agent}status IN ({', '.join(mark * len(f.statuses))})")
            params.extend(f.statuses)
        else:
            where.append(f"status = ANY({mark})")
            params.append(list(f.statuses))
    for condition, at in (
        (f"created_at >= {mark}", f.created_after),
        (f"created_at < {mark}", f.created_before),
        (f"updated_at > {mark}", f.updated_after),
    ):
        if at is not None:
            where.append(condition)
            params.append(at)
    return where, params


def list_sql(f: RunFilter, limit: int, dialect: Dialect) -> tuple[str, list[Any]] | None:
    """The query and its parameters for ``f``; ``None`` when nothing can match."""
    if f.statuses is not None and not f.statuses:
        return None
    order = f.sorted_by()
    mark = "?" if dialect == "sqlite" else "%s"
    where, params = _where(f, dialect, order)
    if f.before is not None:
        # A row comparison: both backends serve it from an index on (..., at, id).
        at = "updated_at" if order == "updated" else "created_at"
        where.append(f"({at}, id) < ({mark}, {mark})")
        params.extend(f.before)
    sql = f"SELECT {RUN_COLS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {_SORTED[order]} LIMIT {mark}"
    params.append(limit)
    return sql, params


def count_sql(f: RunFilter, dialect: Dialect) -> tuple[str, list[Any]] | None:
    """The count of the runs ``f`` matches (its cursor and order aside) and its
    parameters; ``None`` when nothing can match."""
    if f.statuses is not None and not f.statuses:
        return None
    where, params = _where(f, dialect, "newest")
    sql = "SELECT COUNT(*) FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, params
