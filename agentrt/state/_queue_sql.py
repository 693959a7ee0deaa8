"""The queue's SQL, the same for both SQL backends (``?`` placeholders: the PostgreSQL
store swaps them for ``%s``), and the ranking of each tenant's claimable runs.

The scheduler's read does not rank the whole queue: it takes, for each tenant's
priority class present (a skip scan of the ``runs_queue`` index), the class's
oldest claimable runs, and ranks only those (:func:`ranked`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from agentrt.state.run_queue import QueuedRun, RunCap, aged_priority

__all__ = [
    "CLASS_HEAD",
    "FIRST_CLASS",
    "HEADS",
    "NEXT_CLASS_OF_TENANT",
    "NEXT_TENANT",
    "RUNNING",
    "caps_sql",
    "queued_of",
    "ranked",
]

_CLAIMABLE: Final = (
    "status IN ('queued', 'running') AND (lease_expires IS NULL OR lease_expires <= ?)"
)


_QUEUE_ROWS: Final = "status IN ('queued', 'running')"  # what the runs_queue index holds
_HEAD_COLS: Final = "id, namespace, agent, priority, created_at, session_id, pk"

FIRST_CLASS: Final = (
    f"SELECT namespace, priority FROM runs WHERE {_QUEUE_ROWS} ORDER BY namespace, priority LIMIT 1"
)
"""The first (tenant, priority class) with runs in the queue's index; no params."""

NEXT_CLASS_OF_TENANT: Final = (
    f"SELECT namespace, priority FROM runs WHERE {_QUEUE_ROWS} AND namespace = ? "
    "AND priority > ? ORDER BY priority LIMIT 1"
)
"""The tenant's next class after one; params (namespace, priority)."""

NEXT_TENANT: Final = (
    f"SELECT namespace, priority FROM runs WHERE {_QUEUE_ROWS} AND namespace > ? "
    "ORDER BY namespace, priority LIMIT 1"
)
"""The first class of the next tenant; params (namespace,)."""

CLASS_HEAD: Final = (
    f"SELECT {_HEAD_COLS} FROM runs WHERE namespace = ? AND priority = ? AND {_QUEUE_ROWS} "
    f"AND {_CLAIMABLE} ORDER BY created_at, pk LIMIT ?"
)
"""A class's oldest claimable runs; params (namespace, priority, now, limit)."""

HEADS: Final = (
    "WITH RECURSIVE classes AS ("
    f"(SELECT namespace, priority FROM runs WHERE {_QUEUE_ROWS} "
    "ORDER BY namespace, priority LIMIT 1) UNION ALL "
    "SELECT n.namespace, n.priority FROM classes c, LATERAL ("
    f"SELECT namespace, priority FROM runs WHERE {_QUEUE_ROWS} "
    "AND (namespace, priority) > (c.namespace, c.priority) "
    "ORDER BY namespace, priority LIMIT 1) AS n) "
    f"SELECT h.* FROM classes c, LATERAL (SELECT {_HEAD_COLS} FROM runs "
    f"WHERE namespace = c.namespace AND priority = c.priority AND {_QUEUE_ROWS} "
    f"AND {_CLAIMABLE} ORDER BY created_at, pk LIMIT ?) AS h"
)
"""Every class's oldest claimable runs in one statement (a skip scan of the index, for
a backend with LATERAL); params (now, limit)."""


def ranked(
    heads: Iterable[Sequence[Any]], *, now: float, per_tenant: int, aging_s: float
) -> tuple[QueuedRun, ...]:
    """Each tenant's first ``per_tenant`` runs of ``heads`` (rows of its classes' oldest
    claimable runs) in its order: aged priority, then oldest.

    A class's first ``per_tenant`` runs hold all of its that can be among the tenant's
    first ``per_tenant``: of two runs of one class the older is aged as high or higher.
    """
    by_tenant: dict[str, list[Sequence[Any]]] = {}
    for row in heads:
        by_tenant.setdefault(row[1], []).append(row)
    waiting: list[QueuedRun] = []
    for namespace in sorted(by_tenant):
        rows = sorted(
            by_tenant[namespace],
            key=lambda r: (-aged_priority(int(r[3]), float(r[4]), now, aging_s), r[4], r[6]),
        )
        waiting += [queued_of(row) for row in rows[:per_tenant]]
    return tuple(waiting)


RUNNING: Final = (
    "SELECT namespace, agent, COUNT(*) FROM runs WHERE status = 'running' "
    "AND lease_expires > ? GROUP BY namespace, agent"
)
"""The live-leased running runs per (tenant, agent); params (now,)."""


def queued_of(row: Sequence[Any]) -> QueuedRun:
    """A waiting run from a row of :func:`waiting_sql`."""
    return QueuedRun(row[0], row[1], row[2], int(row[3]), float(row[4]), row[5])


def caps_sql(
    caps: Sequence[RunCap], now: float, mark: Callable[[int], str] = lambda _: "?"
) -> tuple[str, list[Any]]:
    """``AND`` conditions that each of ``caps`` has room for one more run at ``now``,
    and their params; ``mark(i)`` is the backend's placeholder of the i-th."""
    sql, params = "", list[Any]()
    for cap in caps:
        values = [cap.namespace, now, *(cap.agents or ()), cap.most]
        marks = [mark(len(params) + i) for i in range(len(values))]
        agents = "" if cap.agents is None else f" AND agent IN ({', '.join(marks[2:-1])})"
        sql += (
            f" AND (SELECT COUNT(*) FROM runs WHERE namespace = {marks[0]} "
            f"AND status = 'running' AND lease_expires > {marks[1]}{agents}) < {marks[-1]}"
        )
        params += values
    return sql, params
