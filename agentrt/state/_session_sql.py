"""The SQL of listing and deleting sessions, the same for both SQL backends.

Written with ``?`` placeholders (SQLite's); the PostgreSQL store swaps them for
``%s`` (:func:`pg`). Rows of :data:`LIST_COLS` become records by :func:`activity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from agentrt.state._rows import SESSION_COLS, session_record
from agentrt.state.records import ACTIVE_STATUSES, WAITING_STATUSES, SessionActivity

__all__ = ["SESSION_TREE", "UNFINISHED_TURN", "activity", "list_sql", "pg"]


def _quoted(statuses: frozenset[str]) -> str:
    return ", ".join(f"'{s}'" for s in sorted(statuses))


_PAGE_COLS: Final = ", ".join(f"p.{c}" for c in SESSION_COLS.split(", "))
_LIST: Final = (
    f"SELECT {_PAGE_COLS}, "
    f"COALESCE(SUM(CASE WHEN r.status IN ({_quoted(ACTIVE_STATUSES)}) THEN 1 ELSE 0 END), 0), "
    f"COALESCE(SUM(CASE WHEN r.status IN ({_quoted(WAITING_STATUSES)}) THEN 1 ELSE 0 END), 0), "
    "COALESCE(MAX(r.updated_at), p.created_at) "
    f"FROM (SELECT {SESSION_COLS} FROM sessions {{where}} "
    "ORDER BY created_at DESC, id DESC LIMIT ?) AS p "
    "LEFT JOIN runs AS r ON r.session_id = p.id "
    f"GROUP BY {_PAGE_COLS} ORDER BY p.created_at DESC, p.id DESC"
)

UNFINISHED_TURN: Final = (
    "SELECT id, status FROM runs WHERE session_id = ? AND finished_at IS NULL ORDER BY turn LIMIT 1"
)
"""A session's first unfinished run, if any (index ``runs_session_turn``)."""

SESSION_TREE: Final = (
    "WITH RECURSIVE tree (pk, id, finished_at) AS ("
    "SELECT pk, id, finished_at FROM runs WHERE session_id = ? "
    "UNION SELECT r.pk, r.id, r.finished_at FROM runs AS r JOIN tree AS t "
    "ON r.parent_run = t.id WHERE r.fork_step IS NULL) "
    "SELECT pk, id, finished_at FROM tree"
)
"""A session's runs and their child runs, theirs too (forks have a ``fork_step``: they
are not children, and live in sessions of their own)."""


def list_sql(
    namespace: str | None, principal: str | None, before: tuple[float, str] | None, limit: int
) -> tuple[str, list[Any]]:
    """The statement of ``Store.list_sessions`` and its parameters."""
    where: list[str] = []
    params: list[Any] = []
    if namespace is not None:
        where.append("namespace = ?")
        params.append(namespace)
    if principal is not None:
        where.append("principal = ?")
        params.append(principal)
    if before is not None:
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params.extend([before[0], before[0], before[1]])
    clause = "WHERE " + " AND ".join(where) if where else ""
    return _LIST.format(where=clause), [*params, limit]


def activity(row: Sequence[Any]) -> SessionActivity:
    """A row of the list statement as a record."""
    return SessionActivity(session_record(row[:7]), int(row[7]), int(row[8]), float(row[9]))


def pg(sql: str) -> str:
    """A statement of this module with PostgreSQL's placeholders."""
    return sql.replace("?", "%s")
