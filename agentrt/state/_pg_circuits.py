"""The PostgreSQL store's circuit breakers: each report applied in one transaction that
locks the circuit's row, and the store's circuit methods, which :class:`PostgresStore`
takes.

A report makes the row if it is missing (``ON CONFLICT DO NOTHING``), locks it
(``FOR UPDATE``), and writes the next state by a compare-and-set on its version:
reports from a fleet of workers on one circuit apply one after another, so of the
calls that find a probe due exactly one claims it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Final

from agentrt.state._circuit_sql import (
    INSERT_CIRCUIT,
    LIST_CIRCUITS,
    SELECT_CIRCUIT,
    UPDATE_CIRCUIT,
    circuit_of,
    update_row,
)
from agentrt.state._pg_rows import Conn, execute, fetch_all, fetch_one
from agentrt.state._session_sql import pg
from agentrt.state.circuits import Circuit, CircuitReport, next_circuit

if TYPE_CHECKING:
    from agentrt.state._pg_runner import Runner

__all__ = ["CircuitMethods"]

_INSERT: Final = pg(INSERT_CIRCUIT)
_SELECT: Final = pg(SELECT_CIRCUIT)
_LOCK: Final = pg(SELECT_CIRCUIT) + " FOR UPDATE"
_UPDATE: Final = pg(UPDATE_CIRCUIT)
_LIST: Final = pg(LIST_CIRCUITS)


async def _report(
    conn: Conn, key: str, namespace: str, report: CircuitReport, now: float
) -> Circuit:
    row = await fetch_one(conn, _LOCK, (key,))
    if row is None:
        if report.what == "succeeded":
            return Circuit(key, namespace)  # nothing to reset: it was never reported on
        await execute(conn, _INSERT, (key, namespace, now))
        row = await fetch_one(conn, _LOCK, (key,))  # made here, or by a report just before
        assert row is not None
    current = circuit_of(row)
    new = next_circuit(current, report, now)
    if new is current:
        return current
    # Under the row's lock the compare-and-set holds; it guards the rule all the same.
    if await execute(conn, _UPDATE, update_row(new, current.version)) == 0:
        return circuit_of(await fetch_one(conn, _SELECT, (key,)) or row)
    return new


async def _get(conn: Conn, key: str) -> Circuit | None:
    row = await fetch_one(conn, _SELECT, (key,))
    return None if row is None else circuit_of(row)


async def _list(conn: Conn, namespace: str) -> list[Circuit]:
    return [circuit_of(row) for row in await fetch_all(conn, _LIST, (namespace,))]


def _no_runs(_: object) -> Collection[str]:
    return ()


class CircuitMethods:
    """The circuit methods of :class:`~agentrt.state.postgres.PostgresStore`."""

    if TYPE_CHECKING:
        _run: Runner

    async def report_circuit(
        self, key: str, namespace: str, report: CircuitReport, *, now: float
    ) -> Circuit:
        """Apply ``report`` to circuit ``key`` of ``namespace`` in one write (made closed
        on first use; nothing is written when it does not change it); the circuit as
        it is now."""
        return await self._run.write(_no_runs, _report, key, namespace, report, now)

    async def get_circuit(self, key: str) -> Circuit | None:
        """The circuit, or ``None`` (never reported on: closed)."""
        return await self._run.read(_get, key)

    async def list_circuits(self, namespace: str) -> list[Circuit]:
        """The circuits of ``namespace``, by key."""
        return await self._run.read(_list, namespace)
