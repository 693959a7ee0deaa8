"""The queue's SQL, the same for both SQL backends but for how a float is floored
(``?`` placeholders: the PostgreSQL store swaps them for ``%s``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from agentrt.state.run_queue import QueuedRun

__all__ = ["RUNNING", "queued_of", "waiting_sql"]

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
