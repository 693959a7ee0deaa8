"""The circuit breakers' SQL and rows, the same for both SQL backends.

Written with ``?`` placeholders (SQLite's); the PostgreSQL store swaps them for
``%s``. A report makes the circuit's row on first use (closed), reads it (locked,
on PostgreSQL), and writes the next state only if it changed, by a compare-and-set
on its version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from agentrt.state.circuits import Circuit

__all__ = [
    "CIRCUIT_COLS",
    "INSERT_CIRCUIT",
    "LIST_CIRCUITS",
    "SELECT_CIRCUIT",
    "UPDATE_CIRCUIT",
    "circuit_of",
    "update_row",
]

CIRCUIT_COLS: Final = (
    "key, namespace, state, failures, open_until, probe, probe_until, opened, version, updated_at"
)
SELECT_CIRCUIT: Final = f"SELECT {CIRCUIT_COLS} FROM model_circuits WHERE key = ?"
LIST_CIRCUITS: Final = f"SELECT {CIRCUIT_COLS} FROM model_circuits WHERE namespace = ? ORDER BY key"
INSERT_CIRCUIT: Final = (
    "INSERT INTO model_circuits (key, namespace, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO NOTHING"
)
"""Make a closed circuit, unless it exists."""
UPDATE_CIRCUIT: Final = (
    "UPDATE model_circuits SET state = ?, failures = ?, open_until = ?, probe = ?, "
    "probe_until = ?, opened = ?, version = ?, updated_at = ? WHERE key = ? AND version = ?"
)
"""The compare-and-set of a report: only over the version it was computed from."""


def circuit_of(row: Sequence[Any]) -> Circuit:
    """A circuit from a row of :data:`CIRCUIT_COLS`."""
    return Circuit(
        str(row[0]), str(row[1]), row[2], int(row[3]), float(row[4]),
        None if row[5] is None else str(row[5]), float(row[6]), int(row[7]), int(row[8]),
        float(row[9]),
    )  # fmt: skip


def update_row(new: Circuit, old_version: int) -> tuple[Any, ...]:
    """The parameters of :data:`UPDATE_CIRCUIT` writing ``new`` over ``old_version``."""
    return (
        new.state, new.failures, new.open_until, new.probe, new.probe_until, new.opened,
        new.version, new.updated_at, new.key, old_version,
    )  # fmt: skip
