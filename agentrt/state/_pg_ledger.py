"""The PostgreSQL store's budget ledger: reservations held and settled against budget
accounts, and the store's ledger methods, which :class:`PostgresStore` takes.

A reservation makes (or updates) its accounts and locks their rows in key order
(``FOR UPDATE``), checks them, then holds: one transaction, so reservations on a
fleet of workers over one account are checked one after another and together
never pass its limits. A settle is a compare-and-set on the reservation's row.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Final

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

if TYPE_CHECKING:
    from agentrt.state._pg_runner import Runner
from agentrt.state._pg_rows import Conn, execute, execute_many, fetch_all, fetch_one
from agentrt.state._session_sql import pg
from agentrt.state.budget_ledger import (
    Amount,
    BudgetAccount,
    BudgetRefusal,
    NewReservation,
    Reservation,
    refusal_of,
)

__all__ = ["LedgerMethods", "LedgerOps", "release_on", "settle_on"]

_UPSERT: Final = pg(UPSERT_ACCOUNT)
_LOCK: Final = pg(SELECT_ACCOUNT) + " FOR UPDATE"
_HOLD: Final = pg(HOLD)
_MOVE: Final = pg(MOVE)
_INSERT: Final = pg(INSERT_RESERVATION)
_SELECT: Final = pg(SELECT_RESERVATION)
_SETTLE: Final = pg(SETTLE)
_HELD: Final = pg(HELD_OF_RUN)
# Share-locked: the run's end (which locks its row) waits for this hold, or comes first.
_RUN_STATUS: Final = pg(RUN_STATUS) + " FOR SHARE"
_LIST: Final = pg(LIST_ACCOUNTS)


class LedgerOps:
    """The ledger's operations (coroutines of a borrowed connection)."""

    async def reserve(
        self, conn: Conn, new: NewReservation, now: float
    ) -> Reservation | BudgetRefusal:
        found = await fetch_one(conn, _SELECT, (new.id,))
        if found is not None:
            return reservation_of(found)
        drafts = sorted(new.accounts, key=lambda d: d.key)
        accounts = []
        for draft in drafts:  # in key order: the order every reservation locks them in
            await execute(conn, _UPSERT, draft_row(draft, now))
            accounts.append(account_of(await _one(conn, _LOCK, draft.key)))
        for account in accounts:
            refused = refusal_of(account, new.amount)
            if refused is not None:
                return refused
        # The run's row is share-locked last, for the transaction's short tail only:
        # taken before the accounts, it would be held while this waits its turn on
        # them, and the run's lease renewal (an update of that row) with it.
        refuse_ended_run(new, await fetch_one(conn, _RUN_STATUS, (new.run_id,)))
        keys = [d.key for d in drafts]
        if await execute(conn, _INSERT, reservation_row(new, keys, now)) == 0:
            # The same step reserved meanwhile, elsewhere: that one holds for it.
            return reservation_of(await _one(conn, _SELECT, new.id))
        await execute_many(conn, _HOLD, [hold_row(new.amount, key, now) for key in keys])
        return Reservation(new.id, new.run_id, tuple(keys), new.amount)

    async def settle(self, conn: Conn, reservation_id: str, actual: Amount, now: float) -> bool:
        return await settle_on(conn, reservation_id, actual, now)

    async def release_run(self, conn: Conn, run_id: str, now: float) -> int:
        return await release_on(conn, run_id, now)

    async def reservation(self, conn: Conn, reservation_id: str) -> Reservation | None:
        row = await fetch_one(conn, _SELECT, (reservation_id,))
        return None if row is None else reservation_of(row)

    async def accounts(self, conn: Conn, namespace: str, prefix: str) -> list[BudgetAccount]:
        return [account_of(r) for r in await fetch_all(conn, _LIST, (namespace, prefix, prefix))]


async def settle_on(conn: Conn, reservation_id: str, actual: Amount, now: float) -> bool:
    """Settle a held reservation in the open transaction (``False``: not held)."""
    if await execute(conn, _SETTLE, settle_row(actual, reservation_id, now)) == 0:
        return False  # settled before, or never held
    held = reservation_of(await _one(conn, _SELECT, reservation_id))
    rows = [moved_row(held.amount, actual, key, now) for key in sorted(held.accounts)]
    await execute_many(conn, _MOVE, rows)
    return True


async def release_on(conn: Conn, run_id: str, now: float) -> int:
    """Settle what ``run_id`` still holds with nothing used, in the open transaction."""
    settled = 0
    for (reservation_id,) in await fetch_all(conn, _HELD, (run_id,)):
        settled += await settle_on(conn, reservation_id, Amount(), now)
    return settled


async def _one(conn: Conn, sql: str, key: str) -> tuple[Any, ...]:
    row = await fetch_one(conn, sql, (key,))
    assert row is not None  # made or read in this transaction
    return row


def _no_runs(_: object) -> Collection[str]:
    return ()


class LedgerMethods:
    """The ledger methods of :class:`~agentrt.state.postgres.PostgresStore`."""

    if TYPE_CHECKING:
        _run: Runner
        _ledger: LedgerOps

    async def reserve_budget(
        self, reservation: NewReservation, *, now: float
    ) -> Reservation | BudgetRefusal:
        """Hold ``reservation``'s amount on each of its accounts if it fits them all,
        else hold nothing and say which limit it would pass; the same id again gets
        the first reservation back."""
        return await self._run.write(_no_runs, self._ledger.reserve, reservation, now)

    async def settle_budget(self, reservation_id: str, actual: Amount, *, now: float) -> bool:
        """Release the reservation's held amount and use ``actual``, once: ``False`` when
        it was settled before (or never made)."""
        return await self._run.write(_no_runs, self._ledger.settle, reservation_id, actual, now)

    async def release_budget(self, run_id: str, *, now: float) -> int:
        """Settle every reservation ``run_id`` still holds with nothing used; how many."""
        return await self._run.write(_no_runs, self._ledger.release_run, run_id, now)

    async def get_reservation(self, reservation_id: str) -> Reservation | None:
        """The reservation, or ``None``."""
        return await self._run.read(self._ledger.reservation, reservation_id)

    async def budget_accounts(self, namespace: str, *, prefix: str = "") -> list[BudgetAccount]:
        """The namespace's budget accounts whose key starts with ``prefix``, by key."""
        return await self._run.read(self._ledger.accounts, namespace, prefix)
