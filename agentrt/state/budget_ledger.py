"""The budget ledger: what a budget limits, what its account used and holds, the
reservation a step makes before it spends, and the store's part of it
(:class:`BudgetLedger`).

A budget account (a tenant's Budget in one period: ``acme/monthly@2026-12``)
counts what was *used* (settled steps) and what is *held* (reservations of
steps in flight). A step reserves its worst case against every account that
encloses it, in one conditional write: it is refused unless, on each account,
``used + held + asked <= limit`` for every limit set. When its result is
recorded it settles: the held amount is released and the actual one used. So
however many runs on however many workers spend from one account at once, what
they used never passes its limit: each of them held its worst case first.

Cost is counted in billionths of a US dollar (:data:`NANO_USD`), an integer, so
sums are exact whatever order the steps settle in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "NANO_USD",
    "AccountDraft",
    "Amount",
    "BudgetAccount",
    "BudgetLedger",
    "BudgetLimits",
    "BudgetRefusal",
    "NewReservation",
    "Reservation",
    "nano_usd",
    "refusal_of",
]

NANO_USD: Final = 1_000_000_000
"""Units of a US dollar the ledger counts cost in."""


def nano_usd(dollars: float) -> int:
    """``dollars`` in the ledger's units, rounded up: a cost is never under-counted."""
    units = dollars * NANO_USD
    whole = int(units)
    return whole + (units > whole)


@dataclass(frozen=True, slots=True)
class Amount:
    """What a step uses, or may use: tokens in and out, cost and tool calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_nusd: int = 0
    tool_calls: int = 0

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> float:
        """The cost in US dollars."""
        return self.cost_nusd / NANO_USD

    def __add__(self, other: Amount) -> Amount:
        return Amount(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_nusd + other.cost_nusd,
            self.tool_calls + other.tool_calls,
        )


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """The limits of a budget account; ``None``: that one is not limited."""

    max_tokens: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_cost_nusd: int | None = None
    max_tool_calls: int | None = None


@dataclass(frozen=True, slots=True)
class AccountDraft:
    """An account a reservation draws on, with its limits as they are now (the
    account is made on first use; its limits follow the latest draft)."""

    key: str
    namespace: str
    limits: BudgetLimits


@dataclass(frozen=True, slots=True)
class BudgetAccount:
    """A budget account as stored."""

    key: str
    namespace: str
    limits: BudgetLimits
    used: Amount
    held: Amount


@dataclass(frozen=True, slots=True)
class NewReservation:
    """What :meth:`Store.reserve_budget` needs: an id unique to the step (the same step
    reserving again, after a crash, gets its first reservation back), its run, the
    amount and the accounts it draws on."""

    id: str
    run_id: str
    amount: Amount
    accounts: tuple[AccountDraft, ...]


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reservation as stored: held until settled, then with what was used."""

    id: str
    run_id: str
    accounts: tuple[str, ...]
    amount: Amount
    settled: bool = False
    actual: Amount | None = None


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """Why a reservation was refused: on ``account``, the ``limit`` named would be
    passed by ``over`` (used and held there already: ``current``, of which ``held`` by
    steps in flight; asked: ``asked``)."""

    account: str
    limit: str
    value: int
    current: int
    asked: int
    held: int = 0

    @property
    def over(self) -> int:
        """By how much the limit would be passed."""
        return self.current + self.asked - self.value

    @property
    def may_fit_later(self) -> bool:
        """Whether it would fit what was *used*: only what steps in flight hold is in
        its way, and they may settle for less."""
        return self.current - self.held + self.asked <= self.value

    def describe(self) -> str:
        """One line for people: which account, which limit, by how much."""
        if self.limit == "max_cost_usd":
            return (
                f"budget {self.account}: max_cost_usd={self.value / NANO_USD:g} would be "
                f"passed by ${self.over / NANO_USD:.6f} (${self.current / NANO_USD:.6f} used "
                f"or held, ${self.asked / NANO_USD:.6f} more asked)"
            )
        return (
            f"budget {self.account}: {self.limit}={self.value} would be passed by "
            f"{self.over} ({self.current} used or held, {self.asked} more asked)"
        )


def refusal_of(account: BudgetAccount, asked: Amount) -> BudgetRefusal | None:
    """The first limit of ``account`` that ``asked`` on top of what it used and holds
    would pass, or ``None`` when it fits."""
    spent, held = account.used + account.held, account.held
    limits = account.limits
    for name, limit, current, in_flight, more in (
        ("max_tokens", limits.max_tokens, spent.tokens, held.tokens, asked.tokens),
        ("max_input_tokens", limits.max_input_tokens, spent.input_tokens, held.input_tokens,
         asked.input_tokens),
        ("max_output_tokens", limits.max_output_tokens, spent.output_tokens, held.output_tokens,
         asked.output_tokens),
        ("max_cost_usd", limits.max_cost_nusd, spent.cost_nusd, held.cost_nusd, asked.cost_nusd),
        ("max_tool_calls", limits.max_tool_calls, spent.tool_calls, held.tool_calls,
         asked.tool_calls),
    ):  # fmt: skip
        if limit is not None and current + more > limit:
            return BudgetRefusal(account.key, name, limit, current, more, in_flight)
    return None


class BudgetLedger(Protocol):
    """The store's budget ledger (part of :class:`~agentrt.state.base.Store`)."""

    async def reserve_budget(
        self, reservation: NewReservation, *, now: float
    ) -> Reservation | BudgetRefusal:
        """Hold ``reservation.amount`` on each of its accounts, in one atomic write,
        if on every one ``used + held + amount`` stays within every limit set;
        else hold nothing and return the first limit it would pass.

        Each account is made on first use, and takes the draft's limits (what it
        used and holds stays). The same reservation id again returns the stored
        reservation, held or settled, and holds nothing more: a step resumed after
        a crash does not reserve twice. Concurrent reservations on one account,
        from any number of processes, are checked one after another, so together
        they never pass its limits.
        """
        ...

    async def settle_budget(self, reservation_id: str, actual: Amount, *, now: float) -> bool:
        """Settle a held reservation: its accounts release the held amount and use
        ``actual``, in one write, once. ``False`` (and nothing changes) when it was
        settled before or never made."""
        ...

    async def release_budget(self, run_id: str, *, now: float) -> int:
        """Settle every reservation of ``run_id`` still held with nothing used (its
        steps will not spend them: the run ended); how many were released."""
        ...

    async def get_reservation(self, reservation_id: str) -> Reservation | None:
        """The reservation, or ``None``."""
        ...

    async def budget_accounts(self, namespace: str, *, prefix: str = "") -> list[BudgetAccount]:
        """The budget accounts of ``namespace`` whose key starts with ``prefix``, in key
        order."""
        ...
