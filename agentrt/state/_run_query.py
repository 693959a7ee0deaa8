"""How both SQL backends list runs: one filter, one ``WHERE`` clause, one order.

SQLite and PostgreSQL differ only in their placeholder and in how a list of
statuses is bound; the filters, the order (newest first by ``(created_at, id)``,
or by turn in a session) and the cursor are written once, here. Every filter is
served by an index of migration 0008 (or the session and parent indexes before
it), so a page of a tenant's runs reads about a page of rows, however many
runs the store holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentrt.errors import UsageError
from agentrt.state._rows import RUN_COLS
from agentrt.state.records import RunCursor, RunOrder

__all__ = ["RunFilter", "list_sql"]

Dialect = Literal["sqlite", "postgresql"]


@dataclass(frozen=True, slots=True)
class RunFilter:
    """What :meth:`Store.list_runs <agentrt.state.base.Store.list_runs>` was asked for."""

    namespace: str | None = None
    session_id: str | None = None
    parent: str | None = None
    statuses: Sequence[str] | None = None
    agent: str | None = None
    principal: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    before: RunCursor | None = None
    order: RunOrder | None = None

    def by_turn(self) -> bool:
        """Whether the runs come in turn order (a session's), else newest first."""
        order = self.order or ("turn" if self.session_id is not None else "newest")
        if order == "turn" and self.session_id is None:
            raise UsageError("runs are in turn order only within a session: give session_id")
        if order == "turn" and self.before is not None:
            raise UsageError("a cursor (before=) pages runs listed newest first, not by turn")
        return order == "turn"


def list_sql(f: RunFilter, limit: int, dialect: Dialect) -> tuple[str, list[Any]] | None:
    """The query and its parameters for ``f``; ``None`` when nothing can match."""
    if f.statuses is not None and not f.statuses:
        return None
    mark = "?" if dialect == "sqlite" else "%s"
    # A session's or a parent's runs are few: their index serves them, not a tenant's.
    # SQLite has no statistics to know it; a unary + keeps a column off its indexes.
    few = f.session_id is not None or f.parent is not None
    off = "+" if few and dialect == "sqlite" else ""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        (f"{off}namespace", f.namespace),
        ("session_id", f.session_id),
        ("parent_run" if f.session_id is None else f"{off}parent_run", f.parent),
        (f"{off}agent", f.agent),
        (f"{off}principal", f.principal),
    ):
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(value)
    if f.statuses is not None:
        if dialect == "sqlite":
            where.append(f"{off}status IN ({', '.join(mark * len(f.statuses))})")
            params.extend(f.statuses)
        else:
            where.append(f"status = ANY({mark})")
            params.append(list(f.statuses))
    if f.created_after is not None:
        where.append(f"created_at >= {mark}")
        params.append(f.created_after)
    if f.created_before is not None:
        where.append(f"created_at < {mark}")
        params.append(f.created_before)
    by_turn = f.by_turn()
    if f.before is not None:
        # A row comparison: both backends serve it from an index on (..., created_at, id).
        where.append(f"(created_at, id) < ({mark}, {mark})")
        params.extend(f.before)
    sql = f"SELECT {RUN_COLS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {'turn' if by_turn else 'created_at DESC, id DESC'} LIMIT {mark}"
    params.append(limit)
    return sql, params
