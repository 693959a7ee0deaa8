"""The SQLite store's circuit breakers: each report applied in one transaction of its
single writer, and the store's circuit methods, which :class:`SqliteStore` takes.

SQLite's writer lock (``BEGIN IMMEDIATE``) puts every report, from this process or
another one on the same file, after the one before: of the calls that find a probe
due, the first claims it and the others read it claimed.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, TypeVar

from agentrt.state._circuit_sql import (
    INSERT_CIRCUIT,
    LIST_CIRCUITS,
    SELECT_CIRCUIT,
    UPDATE_CIRCUIT,
    circuit_of,
    update_row,
)
from agentrt.state._sqlite_part import SqlitePart
from agentrt.state._sqlite_writer import READ, WRITE
from agentrt.state.circuits import Circuit, CircuitReport, next_circuit

__all__ = ["CircuitMethods", "CircuitOps"]

T = TypeVar("T")


class CircuitOps:
    """The circuits' operations on one connection (writer thread only)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Wrap ``conn``."""
        self.conn = conn

    def report(self, key: str, namespace: str, report: CircuitReport, now: float) -> Circuit:
        conn = self.conn
        row = conn.execute(SELECT_CIRCUIT, (key,)).fetchone()
        current = Circuit(key, namespace) if row is None else circuit_of(row)
        new = next_circuit(current, report, now)
        if new is current:
            return current
        if row is None:
            conn.execute(INSERT_CIRCUIT, (key, namespace, now))
        # Within the writer's transaction nobody comes between the read and this.
        conn.execute(UPDATE_CIRCUIT, update_row(new, current.version))
        return new

    def get(self, key: str) -> Circuit | None:
        row = self.conn.execute(SELECT_CIRCUIT, (key,)).fetchone()
        return None if row is None else circuit_of(row)

    def list(self, namespace: str) -> list[Circuit]:
        return [circuit_of(row) for row in self.conn.execute(LIST_CIRCUITS, (namespace,))]


class CircuitMethods(SqlitePart):
    """The circuit methods of :class:`~agentrt.state.sqlite.SqliteStore`."""

    if TYPE_CHECKING:

        @property
        def _circuits(self) -> CircuitOps: ...

    async def report_circuit(
        self, key: str, namespace: str, report: CircuitReport, *, now: float
    ) -> Circuit:
        """Apply ``report`` to circuit ``key`` of ``namespace`` in one write (made closed
        on first use; nothing is written when it does not change it); the circuit as
        it is now."""
        return await self._submit(WRITE, self._circuits.report, key, namespace, report, now)

    async def get_circuit(self, key: str) -> Circuit | None:
        """The circuit, or ``None`` (never reported on: closed)."""
        return await self._submit(READ, self._circuits.get, key)

    async def list_circuits(self, namespace: str) -> list[Circuit]:
        """The circuits of ``namespace``, by key."""
        return await self._submit(READ, self._circuits.list, namespace)
