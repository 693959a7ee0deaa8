"""The budget ledger's SQL and rows, the same for both SQL backends.

Written with ``?`` placeholders (SQLite's); the PostgreSQL store swaps them for
``%s`` (:func:`agentrt.state._session_sql.pg`). Accounts are always locked, made
and changed in key order, so two reservations over the same accounts on a fleet
wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from agentrt import _json
from agentrt.errors import LeaseLost
from agentrt.state.budget_ledger import (
    AccountDraft,
    Amount,
    BudgetAccount,
    BudgetLimits,
    NewReservation,
    Reservation,
)
from agentrt.state.records import TERMINAL_STATUSES

__all__ = [
    "ACCOUNT_COLS",
    "HELD_OF_RUN",
    "HOLD",
    "INSERT_RESERVATION",
    "LIST_ACCOUNTS",
    "MOVE",
    "RESERVATION_COLS",
    "SELECT_ACCOUNT",
    "SELECT_RESERVATION",
    "SETTLE",
    "UPSERT_ACCOUNT",
    "account_of",
    "draft_row",
    "hold_row",
    "moved_row",
    "RUN_STATUS",
    "refuse_ended_run",
    "reservation_of",
    "reservation_row",
    "settle_row",
]

_LIMITS: Final = "max_tokens, max_input_tokens, max_output_tokens, max_cost_nusd, max_tool_calls"
ACCOUNT_COLS: Final = (
    f"key, namespace, {_LIMITS}, used_input, used_output, used_cost_nusd, used_tool_calls, "
    "held_input, held_output, held_cost_nusd, held_tool_calls"
)
UPSERT_ACCOUNT: Final = (
    f"INSERT INTO budget_accounts (key, namespace, {_LIMITS}, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
    "max_tokens = excluded.max_tokens, max_input_tokens = excluded.max_input_tokens, "
    "max_output_tokens = excluded.max_output_tokens, max_cost_nusd = excluded.max_cost_nusd, "
    "max_tool_calls = excluded.max_tool_calls"
)
"""Make an account, or bring its limits to the draft's (what it used stays)."""
SELECT_ACCOUNT: Final = f"SELECT {ACCOUNT_COLS} FROM budget_accounts WHERE key = ?"
LIST_ACCOUNTS: Final = (
    f"SELECT {ACCOUNT_COLS} FROM budget_accounts "
    "WHERE namespace = ? AND substr(key, 1, length(?)) = ? ORDER BY key"
)
HOLD: Final = (
    "UPDATE budget_accounts SET held_input = held_input + ?, held_output = held_output + ?, "
    "held_cost_nusd = held_cost_nusd + ?, held_tool_calls = held_tool_calls + ?, "
    "updated_at = ? WHERE key = ?"
)
"""Add to what an account holds (negative: release it)."""
MOVE: Final = (
    "UPDATE budget_accounts SET held_input = held_input - ?, held_output = held_output - ?, "
    "held_cost_nusd = held_cost_nusd - ?, held_tool_calls = held_tool_calls - ?, "
    "used_input = used_input + ?, used_output = used_output + ?, "
    "used_cost_nusd = used_cost_nusd + ?, used_tool_calls = used_tool_calls + ?, "
    "updated_at = ? WHERE key = ?"
)
"""Release a held amount and use the actual one."""
RESERVATION_COLS: Final = (
    "id, run_id, accounts, input_tokens, output_tokens, cost_nusd, tool_calls, settled_at, "
    "actual_input, actual_output, actual_cost_nusd, actual_tool_calls"
)
INSERT_RESERVATION: Final = (
    "INSERT INTO budget_reservations (id, run_id, accounts, input_tokens, output_tokens, "
    "cost_nusd, tool_calls, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
SELECT_RESERVATION: Final = f"SELECT {RESERVATION_COLS} FROM budget_reservations WHERE id = ?"
SETTLE: Final = (
    "UPDATE budget_reservations SET settled_at = ?, actual_input = ?, actual_output = ?, "
    "actual_cost_nusd = ?, actual_tool_calls = ? WHERE id = ? AND settled_at IS NULL"
)
"""The compare-and-set that settles a reservation once: only while it is held."""
RUN_STATUS: Final = "SELECT status FROM runs WHERE id = ?"
"""A run's status, read (PostgreSQL: share-locked) before holding for it: a run ends
and releases its holds in one write, so none may be added once it has ended."""
HELD_OF_RUN: Final = (
    "SELECT id FROM budget_reservations WHERE run_id = ? AND settled_at IS NULL ORDER BY id"
)


def refuse_ended_run(new: NewReservation, row: Sequence[Any] | None) -> None:
    """Refuse a hold for a run that has ended (``row``: its ``RUN_STATUS``): its end
    released what it held, so nothing would release this one. An execution that
    still asks has lost the run to another worker, which ended it.

    Raises:
        LeaseLost: the run has ended.
    """
    if row is not None and row[0] in TERMINAL_STATUSES:
        raise LeaseLost(f"run {new.run_id!r} has ended {row[0]}: nothing more is reserved for it")


def _amount(row: Sequence[Any]) -> Amount:
    return Amount(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def account_of(row: Sequence[Any]) -> BudgetAccount:
    """An account from a row of :data:`ACCOUNT_COLS`."""
    limits = BudgetLimits(*row[2:7])
    return BudgetAccount(row[0], row[1], limits, _amount(row[7:11]), _amount(row[11:15]))


def reservation_of(row: Sequence[Any]) -> Reservation:
    """A reservation from a row of :data:`RESERVATION_COLS`."""
    settled = row[7] is not None
    actual = _amount(row[8:12]) if settled else None
    accounts = tuple(_json.loads(row[2]))
    return Reservation(row[0], row[1], accounts, _amount(row[3:7]), settled, actual)


def draft_row(draft: AccountDraft, now: float) -> tuple[Any, ...]:
    """The parameters of :data:`UPSERT_ACCOUNT` for ``draft``."""
    lim = draft.limits
    return (
        draft.key, draft.namespace, lim.max_tokens, lim.max_input_tokens,
        lim.max_output_tokens, lim.max_cost_nusd, lim.max_tool_calls, now,
    )  # fmt: skip


def reservation_row(new: NewReservation, keys: Sequence[str], now: float) -> tuple[Any, ...]:
    """The parameters of :data:`INSERT_RESERVATION` for ``new``."""
    a = new.amount
    return (
        new.id, new.run_id, _json.dumps_str(list(keys)), a.input_tokens, a.output_tokens,
        a.cost_nusd, a.tool_calls, now,
    )  # fmt: skip


def hold_row(amount: Amount, key: str, now: float) -> tuple[Any, ...]:
    """The parameters of :data:`HOLD` adding ``amount`` to account ``key``."""
    a = amount
    return (a.input_tokens, a.output_tokens, a.cost_nusd, a.tool_calls, now, key)


def moved_row(held: Amount, actual: Amount, key: str, now: float) -> tuple[Any, ...]:
    """The parameters of :data:`MOVE` for account ``key``."""
    h, a = held, actual
    return (
        h.input_tokens, h.output_tokens, h.cost_nusd, h.tool_calls,
        a.input_tokens, a.output_tokens, a.cost_nusd, a.tool_calls, now, key,
    )  # fmt: skip


def settle_row(actual: Amount, reservation_id: str, now: float) -> tuple[Any, ...]:
    """The parameters of :data:`SETTLE`."""
    a = actual
    return (now, a.input_tokens, a.output_tokens, a.cost_nusd, a.tool_calls, reservation_id)
