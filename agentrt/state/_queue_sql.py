"""The queue's SQL, the same for both SQL backends but for how a float is floored
(``?`` placeholders: the PostgreSQL store swaps them for ``%s``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from agentrt.state.run_queue import QueuedRun, RunCap

__all__ = ["RUNNING", "caps_sql", "queued_of", "waiting_sql"]

_CLAIMABLE: Final = (
    "status IN ('queued', 'running') AND (lease_expires IS NULL OR lease_expires <= ?)"
)


def waiting_sql(floor: str) -> str:
    """Each tenant's first claimable runs in its order; params (now, aging_s, now, limit).
    ``floor`` is the backend's floor of a float to an integer."""
    return (
        "SELECT id, namespace, agent, priority, created_at, session_id FROM ("
        "SELECT id, namespace, agent, priority, created_at, session_id, row_number() OVER ("
        f"PARTITION BY namespace ORDER BY priority + {floor.format('(? - created_at) / ?')} "
        f"DESC, created_at, pk) AS place FROM runs WHERE {_CLAIMABLE}) AS q "
        "WHERE place <= ? ORDER BY namespace, place"
    )


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
