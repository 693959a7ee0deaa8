"""The row layouts both SQL backends read, and their rows as records.

SQLite and PostgreSQL keep the same columns in the same order, so one mapping
serves both (a boolean comes back as 0/1 from SQLite, as a bool from
PostgreSQL: ``bool()`` takes either).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from agentrt._json import loads
from agentrt.state.records import ResourceRecord, RunRecord, SessionRecord, Usage

__all__ = [
    "RESOURCE_COLS",
    "RUN_COLS",
    "SESSION_COLS",
    "resource_record",
    "run_record",
    "session_record",
]

RUN_COLS: Final = (
    "id, namespace, agent, status, created_at, updated_at, session_id, turn, reason, "
    "finished_at, idempotency_key, parent_run, fork_step, lease_owner, lease_expires, "
    "lease_token, cancel_requested, last_seq, input_tokens, output_tokens, cost_usd, "
    "model_calls, tool_calls, cancel_cause, principal, cancel_by, cancel_at, priority"
)
"""The columns :func:`run_record` reads, in its order."""

SESSION_COLS: Final = "id, namespace, created_at, parent_session, parent_turn, next_turn, principal"
"""The columns :func:`session_record` reads, in its order."""

RESOURCE_COLS: Final = "kind, namespace, name, generation, body, created_at, updated_at"
"""The columns :func:`resource_record` reads, in its order."""


def run_record(row: Sequence[Any]) -> RunRecord:
    """A run from a row of :data:`RUN_COLS`."""
    return RunRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
        row[10], row[11], row[12], row[13], row[14], row[15], bool(row[16]), row[17],
        Usage(row[18], row[19], row[20], row[21], row[22]), row[23], row[24], row[25],
        row[26], int(row[27]),
    )  # fmt: skip


def session_record(row: Sequence[Any]) -> SessionRecord:
    """A session from a row of :data:`SESSION_COLS`."""
    return SessionRecord(*row)


def resource_record(row: Sequence[Any]) -> ResourceRecord:
    """A resource from a row of :data:`RESOURCE_COLS` (the body decoded from JSON)."""
    return ResourceRecord(row[0], row[1], row[2], row[3], loads(row[4]), row[5], row[6])
