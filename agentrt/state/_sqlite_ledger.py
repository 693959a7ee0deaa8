"""The SQLite store's budget ledger: reservations held and settled against budget
accounts, and the store's ledger methods, which :class:`SqliteStore` takes.

Each operation is one transaction of SQLite's single writer (``BEGIN IMMEDIATE``),
so a reservation's check and its hold are one step no other process comes
between, on one machine or many processes of one file.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, TypeVar

from agentrt.state._ledger_sql import (
    HELD_OF_RUN,
    HOLD,
    INSERT_RESERVATION,
    LIST_ACCOUNTS,
    MOVE,
    RUN_STATUS,
    SELECT_ACCOUNT,
    SELECT_RESERVATION,
    SETTLE,
    UPSERT_ACCOUNT,
    account_of,
    draft_row,
    hold_row,
    moved_row,
    refuse_ended_run,
    reservation_of,
    reservation_row,
    settle_row,
)
from agentrt.state._sqlite_part import SqlitePart
from agentrt.state._sqlite_writer import READ, WRITE
from agentrt.state.budget_ledger import (
    Amount,
    BudgetAccount,
    BudgetRefusal,
    NewReservation,
    Reservation,
    refusal_of,
)

__all__ = ["LedgerMethods", "LedgerOps", "release_on", "settle_on"]

T = TypeVar("T")


def settle_on(conn: sqlite3.Connection, reservation_id: str, actual: Amount, now: float) -> bool:
    """Settle a held reservation in the open transaction (``False``: not held)."""
    if conn.execute(SETTLE, settle_row(actual, reservation_id, now)).rowcount == 0:
        return False  # settled before, or never held
    held = reservation_of(conn.execute(SELECT_RESERVATION, (reservation_id,)).fetchone())
    rows = [moved_row(held.amount, actual, key, now) for key in sorted(held.accounts)]
    conn.executemany(MOVE, rows)
    return True


def release_on(conn: sqlite3.Connection, run_id: str, now: float) -> int:
    """Settle what ``run_id`` still holds with nothing used, in the open transaction."""
    held = [row[0] for row in conn.execute(HELD_OF_RUN, (run_id,))]
    return sum(settle_on(conn, reservation_id, Amount(), now) for reservation_id in held)


class LedgerOps:
    """The ledger's operations on one connection (writer thread only)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Wrap ``conn``."""
        self.conn = conn

    def reserve(self, new: NewReservation, now: float) -> Reservation | BudgetRefusal:
        conn = self.conn
        found = conn.execute(SELECT_RESERVATION, (new.id,)).fetchone()
        if found is not None:
            return reservation_of(found)
        refuse_ended_run(new, conn.execute(RUN_STATUS, (new.run_id,)).fetchone())
        drafts = sorted(new.accounts, key=lambda d: d.key)
        conn.executemany(UPSERT_ACCOUNT, [draft_row(d, now) for d in drafts])
        for draft in drafts:
            account = account_of(conn.execute(SELECT_ACCOUNT, (draft.key,)).fetchone())
            refused = refusal_of(account, new.amount)
            if refused is not None:
                return refused
        keys = [d.key for d in drafts]
        conn.execute(INSERT_RESERVATION, reservation_row(new, keys, now))
        conn.executemany(HOLD, [hold_row(new.amount, key, now) for key in keys])
        return Reservation(new.id, new.run_id, tuple(keys), new.amount)

    def settle(self, reservation_id: str, actual: Amount, now: float) -> bool:
        return settle_on(self.conn, reservation_id, actual, now)

    def release_run(self, run_id: str, now: float) -> int:
        return release_on(self.conn, run_id, now)

    def reservation(self, reservation_id: str) -> Reservation | None:
        row = self.conn.execute(SELECT_RESERVATION, (reservation_id,)).fetchone()
        return None if row is None else reservation_of(row)

    def accounts(self, namespace: str, prefix: str) -> list[BudgetAccount]:
        rows = self.conn.execute(LIST_ACCOUNTS, (namespace, prefix, prefix))
        return [account_of(row) for row in rows]


class LedgerMethods(SqlitePart):
    """The ledger methods of :class:`~agentrt.state.sqlite.SqliteStore`."""

    if TYPE_CHECKING:

        @property
        def _ledger(self) -> LedgerOps: ...

    async def reserve_budget(
        self, reservation: NewReservation, *, now: float
    ) -> Reservation | BudgetRefusal:
        """Hold ``reservation``'s amount on each of its accounts if it fits them all,
        else hold nothing and say which limit it would pass; the same id again gets
        the first reservation back."""
        return await self._submit(WRITE, self._ledger.reserve, reservation, now)

    async def settle_budget(self, reservation_id: str, actual: Amount, *, now: float) -> bool:
        """Release the reservation's held amount and use ``actual``, once: ``False`` when
        it was settled before (or never made)."""
        return await self._submit(WRITE, self._ledger.settle, reservation_id, actual, now)

    async def release_budget(self, run_id: str, *, now: float) -> int:
        """Settle every reservation ``run_id`` still holds with nothing used; how many."""
        return await self._submit(WRITE, self._ledger.release_run, run_id, now)

    async def get_reservation(self, reservation_id: str) -> Reservation | None:
        """The reservation, or ``None``."""
        return await self._submit(READ, self._ledger.reservation, reservation_id)

    async def budget_accounts(self, namespace: str, *, prefix: str = "") -> list[BudgetAccount]:
        """The namespace's budget accounts whose key starts with ``prefix``, by key."""
        return await self._submit(READ, self._ledger.accounts, namespace, prefix)
