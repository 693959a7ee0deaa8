"""A model step's and a tool call's reservation against its tenant's ``Budget`` resources.

Before a step calls a model, its worst case is reserved in the store's budget
ledger against the account of every Budget of the run's tenant (each Budget's
current day or month), in one atomic write (see
:mod:`agentrt.state.budget_ledger`). The worst case is an upper bound by
construction:

- input tokens: the bytes of the request's messages and tool schemas, in JSON
  (a token covers at least one byte, so no tokenizer counts more);
- output tokens: the call's ``max_output_tokens``; a call with none is given the
  Model's ``max_output_tokens``, else :data:`DEFAULT_OUTPUT_CAP`, so the bound
  holds;
- cost: the dearest Model of the step's chain (it and its fallbacks) at those
  counts.

The step's result settles it to what it used, in the write that records the
result, so the ledger counts exactly what the runs' logs record. A step whose
worst case does not fit what was *used* stops its run ``budget_exhausted``,
naming the Budget, the limit and by how much; nothing was called. One that
fits what was used but not what other steps in flight hold waits for them to
settle instead (no run is refused for what others only might spend). The same
step reserving again after a crash gets its first reservation back.

A tool call reserves one call (:data:`ONE_TOOL_CALL`) on the Budgets that limit
tool calls, before its intent is recorded, and the intent's write uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from agentrt import _json
from agentrt.engine.budget_scopes import NO_SCOPE, BudgetScope
from agentrt.engine.plans import RunCreated, RunSpec
from agentrt.engine.recent_reads import RecentReads
from agentrt.errors import BudgetExhausted
from agentrt.models.base import ModelRequest
from agentrt.spec.budget_spec import BudgetSpec
from agentrt.spec.model_spec import ModelSpec
from agentrt.state.base import Store, Usage
from agentrt.state.budget_ledger import (
    NANO_USD,
    AccountDraft,
    Amount,
    BudgetAccount,
    BudgetLimits,
    BudgetRefusal,
    NewReservation,
    nano_usd,
    refusal_of,
)

__all__ = [
    "DEFAULT_OUTPUT_CAP",
    "BudgetBook",
    "admission_refusal",
    "first_step_floor",
    "budget_accounts",
    "ONE_TOOL_CALL",
    "hold_model_step",
    "hold_tool_call",
    "limits_of",
    "model_reservation_id",
    "spent",
    "worst_case",
]

_FIRST_PAUSE_S: Final = 0.02
_LAST_PAUSE_S: Final = 0.5

DEFAULT_OUTPUT_CAP: Final = 4096
"""The output tokens a call with no ``max_output_tokens`` may produce while a Budget
limits its tenant's tokens or cost (it is sent as the call's limit)."""


def limits_of(spec: BudgetSpec) -> BudgetLimits:
    """The ledger's limits of a Budget (its cost in billionths of a dollar, rounded
    down: the ledger never allows more than the Budget says)."""
    cost = None if spec.max_cost_usd is None else int(spec.max_cost_usd * NANO_USD)
    return BudgetLimits(
        spec.max_tokens, spec.max_input_tokens, spec.max_output_tokens, cost, spec.max_tool_calls
    )


def _limit_model_steps(draft: AccountDraft) -> bool:
    limits = draft.limits
    return any(
        limit is not None
        for limit in (limits.max_tokens, limits.max_input_tokens, limits.max_output_tokens,
                      limits.max_cost_nusd)
    )  # fmt: skip


async def budget_accounts(
    store: Store, namespace: str, now: float, scope: BudgetScope = NO_SCOPE
) -> tuple[AccountDraft, ...]:
    """The accounts a step of ``namespace`` in ``scope`` at ``now`` draws on: one per
    Budget of the tenant that applies to it, for the period ``now`` falls in
    (``acme/monthly@2026-12``; a session's own: ``.../session:ID``), then those of
    the runs above it."""
    return _drafts(namespace, await _budgets(store, namespace), now, scope)


async def _budgets(store: Store, namespace: str) -> list[tuple[str, BudgetSpec]]:
    return [
        (record.name, BudgetSpec.model_validate(record.body["spec"]))
        for record in await store.list_resources("Budget", namespace)
    ]


def _drafts(
    namespace: str, budgets: list[tuple[str, BudgetSpec]], now: float, scope: BudgetScope
) -> tuple[AccountDraft, ...]:
    keyed = ((scope.key(namespace, name, spec, now), spec) for name, spec in budgets)
    own = tuple(AccountDraft(key, namespace, limits_of(spec)) for key, spec in keyed if key)
    return own + scope.above


class BudgetBook:
    """The Budgets of each tenant as one process's steps draw on them: read from the
    store at most once every ``ttl_s`` per tenant, so a step of a tenant without a
    Budget costs no read. A Budget applied, raised or lowered reaches the steps of
    every process within ``ttl_s``; what was reserved before stands."""

    def __init__(
        self, store: Store, *, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Read ``store``'s Budgets, again once ``ttl_s`` passed on ``clock``."""
        self._store = store
        self._read = RecentReads[str, list[tuple[str, BudgetSpec]]](ttl_s=ttl_s, clock=clock)
        # The runs whose step waits here for other steps' holds to settle: they take
        # no worker slot, so the runs holding (perhaps queued) can still be claimed.
        self.waiting: set[str] = set()
        self._turns: dict[str, asyncio.Lock] = {}

    def turn(self, namespace: str) -> asyncio.Lock:
        """What a waiting step of ``namespace`` holds while it looks again: one at a
        time per tenant in this process, first come first served, so a crowd of
        waiters makes one read at a time, not a convoy on the accounts' row locks."""
        return self._turns.setdefault(namespace, asyncio.Lock())

    async def accounts(
        self, namespace: str, now: float, scope: BudgetScope = NO_SCOPE
    ) -> tuple[AccountDraft, ...]:
        """The accounts a step of ``namespace`` in ``scope`` at ``now`` (Unix seconds)
        draws on."""
        budgets = await self._read.get(namespace, lambda: _budgets(self._store, namespace))
        return _drafts(namespace, budgets, now, scope)


def spent(usage: Usage) -> Amount:
    """What a recorded usage settles a reservation to (its cost rounded up)."""
    return Amount(
        usage.input_tokens, usage.output_tokens, nano_usd(usage.cost_usd), usage.tool_calls
    )


def first_step_floor(created: RunCreated) -> Amount:
    """Less than the first step of ``created`` will reserve: its instructions and input
    read at the lowest input price of the Models it may call (the request holds them
    and more; a routing rule, a tier or a fallback may send it to any of them)."""
    plan = created.plan
    if not isinstance(plan, RunSpec):
        return Amount(1, 0, 1, 0)  # a team's first step is its nodes'
    sent = len(plan.agent_spec.instructions.encode()) + len(created.input.encode())
    cost = min(model.pricing.cost(sent, 0) for model in plan.models.values())
    return Amount(sent, 0, nano_usd(cost), 0)


async def admission_refusal(
    store: Store, namespace: str, floor: Amount, now: float, scope: BudgetScope = NO_SCOPE
) -> str | None:
    """Why a new query of ``namespace`` in ``scope`` (its Agent, its session) whose first
    step needs more than ``floor`` cannot start (a Budget it would draw on has less
    left than that), else ``None``. What steps in flight hold does not count: they
    may settle for less."""
    for draft in await budget_accounts(store, namespace, now, scope):
        found = await store.budget_accounts(namespace, prefix=draft.key)
        # None yet: nothing was used in this period.
        used = next((a.used for a in found if a.key == draft.key), Amount())
        refused = refusal_of(
            BudgetAccount(draft.key, namespace, draft.limits, used, Amount()), floor
        )
        if refused is not None:
            return f"{refused.describe()}; no query starts until the Budget is raised"
    return None


def model_reservation_id(run_id: str, step: int) -> str:
    """The reservation of a run's model step (the same every time the step is tried)."""
    return f"{run_id}:{step}:model"


def _capped(request: ModelRequest, first: ModelSpec) -> ModelRequest:
    if request.max_output_tokens is not None:
        return request
    return replace(request, max_output_tokens=first.max_output_tokens or DEFAULT_OUTPUT_CAP)


def worst_case(request: ModelRequest, chain: list[ModelSpec]) -> Amount:
    """The most a call of ``request`` (with its ``max_output_tokens`` set) may use on
    any Model of ``chain``."""
    sent = len(_json.dumps(request.messages)) + len(
        _json.dumps([[t.name, t.description, t.parameters] for t in request.tools])
    )
    out = request.max_output_tokens or DEFAULT_OUTPUT_CAP
    cost = max(nano_usd(spec.pricing.cost(sent, out)) for spec in chain)
    return Amount(sent, out, cost, 0)


async def hold_model_step(
    store: Store,
    book: BudgetBook | None,
    *,
    namespace: str,
    run_id: str,
    step: int,
    request: ModelRequest,
    chain: list[ModelSpec],
    now: float,
    scope: BudgetScope = NO_SCOPE,
) -> tuple[ModelRequest, str | None]:
    """Reserve the step's worst case against its tenant's Budgets that apply to its
    ``scope`` (as ``book`` knows them, else as the store has them now) and the
    accounts above it: the request as it will be sent (its output capped) and the
    reservation's id (``None``: nothing limits its tokens or cost).

    Raises:
        BudgetExhausted: the worst case does not fit a Budget; nothing was held.
    """
    drawn = await _accounts(store, book, namespace, now, scope)
    accounts = tuple(a for a in drawn if _limit_model_steps(a))
    if not accounts:
        return request, None
    request = _capped(request, chain[0])
    rid = model_reservation_id(run_id, step)
    asked = NewReservation(rid, run_id, worst_case(request, chain), accounts)
    await _hold(store, asked, step, now, book)
    return request, rid


async def hold_tool_call(
    store: Store,
    book: BudgetBook | None,
    *,
    namespace: str,
    run_id: str,
    step: int,
    attempt: int,
    now: float,
    scope: BudgetScope = NO_SCOPE,
) -> str | None:
    """Reserve one tool call (an attempt of the call at ``step``) against the Budgets of
    its tenant that limit tool calls; the reservation's id (``None``: none does). It
    is settled to one call in the write that records the call's intent.

    Raises:
        BudgetExhausted: no call is left in a Budget; nothing was held.
    """
    drawn = await _accounts(store, book, namespace, now, scope)
    accounts = tuple(a for a in drawn if a.limits.max_tool_calls is not None)
    if not accounts:
        return None
    rid = f"{run_id}:{step}:tool:{attempt}"
    await _hold(store, NewReservation(rid, run_id, ONE_TOOL_CALL, accounts), step, now, book)
    return rid


ONE_TOOL_CALL: Final = Amount(0, 0, 0, 1)
"""What a tool call reserves, and settles to."""


async def _accounts(
    store: Store, book: BudgetBook | None, namespace: str, now: float, scope: BudgetScope
) -> tuple[AccountDraft, ...]:
    if book is None:
        return await budget_accounts(store, namespace, now, scope)
    return await book.accounts(namespace, now, scope)


async def _hold(
    store: Store, asked: NewReservation, step: int, now: float, book: BudgetBook | None
) -> None:
    """Hold ``asked``, waiting while only others' holds are in the way (counted in
    ``book.waiting`` meanwhile).

    A waiting step looks again without locking anything (a read of its accounts)
    and reserves only once that read shows room: a reservation locks the tenant's
    account rows, and a crowd of waiters reserving in turn would queue every
    step's write behind them (and the worker's lease renewals behind those).
    """
    held = await store.reserve_budget(asked, now=now)
    if not isinstance(held, BudgetRefusal):
        return
    pause = _FIRST_PAUSE_S
    namespace = asked.accounts[0].namespace
    try:
        while isinstance(held, BudgetRefusal):
            if not held.may_fit_later:
                raise BudgetExhausted(
                    f"step {step} cannot be reserved: {held.describe()}; raise the Budget "
                    "(or wait for its next period), then resume the run"
                )
            # Only other steps' holds are in the way: they settle (most for less than
            # they held) within a model call, so wait for them rather than refuse.
            if book is not None:
                book.waiting.add(asked.run_id)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LAST_PAUSE_S)
            turn = contextlib.nullcontext() if book is None else book.turn(namespace)
            async with turn:
                waits_still = await _held_back(store, asked)
                if waits_still is None:
                    held = await store.reserve_budget(asked, now=now)
                else:
                    held = waits_still
    finally:
        if book is not None:
            book.waiting.discard(asked.run_id)


async def _held_back(store: Store, asked: NewReservation) -> BudgetRefusal | None:
    """What still holds ``asked`` back by the accounts as they read now (no lock),
    if only others' holds do; ``None``: it may fit, or only a reservation can say."""
    namespace = asked.accounts[0].namespace
    for draft in asked.accounts:
        found = await store.budget_accounts(namespace, prefix=draft.key)
        account = next((a for a in found if a.key == draft.key), None)
        if account is None:
            return None  # made by the reservation itself
        refused = refusal_of(replace(account, limits=draft.limits), asked.amount)
        if refused is not None and refused.may_fit_later:
            return refused
    return None
