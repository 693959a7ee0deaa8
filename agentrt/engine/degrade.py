"""A model step sent to the cheapest Model of its chain while its tenant's Budget runs
low (an Agent's ``degrade: {when_left_below: F}``).

Before a new step reserves, it reads the accounts of its tenant's Budgets (each
one's current day, month or total): when on any of them what is left of a limit
(``max_cost_usd``, ``max_tokens``, ``max_input_tokens``, ``max_output_tokens``),
neither used nor held by steps in flight, is under ``F`` of that limit, the step
calls only the cheapest Model of its chain (the agent's model and its fallbacks,
priced at the step's worst case; the first of equals), and reserves at that
Model's price, so more of what is left fits. Its fallbacks are not tried: they
would spend what the tenant is short of.

The decision is recorded with the step's intent, ``degraded: {to, budget, limit,
left}``. A step whose intent is in the log goes the way it records (degraded or
not), whatever the Budget says by then; replay returns the recorded answer. What
it costs: one read of the ledger per Budget of the tenant, per new model step of
an Agent with ``degrade`` (none for a tenant without a Budget).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agentrt.engine.journal import Journal
from agentrt.engine.tenant_budgets import budget_accounts, worst_case
from agentrt.models.base import ModelRequest
from agentrt.state.budget_ledger import Amount, BudgetAccount, BudgetLimits

if TYPE_CHECKING:
    from agentrt.engine.gateway import ModelChain

__all__ = ["degraded_chain", "low_budget"]


async def degraded_chain(
    journal: Journal, namespace: str, step: int, via: ModelChain, request: ModelRequest
) -> tuple[ModelChain, dict[str, Any] | None]:
    """The chain step ``step`` calls, and the decision to record with its intent when
    it is degraded now (``None``: not degraded, or already recorded)."""
    rec = journal.recorded(step)
    if rec is not None and rec.intent is not None:  # decided when the step began
        decided = rec.intent.data.get("degraded")
        return (_only(via, str(decided["to"])) if decided else via), None
    if via.degrade is None or journal.replay:
        return via, None
    low = await low_budget(journal, namespace, via.degrade.when_left_below)
    if low is None:
        return via, None
    cheapest = min(via.chain, key=lambda name: worst_case(request, [via.models[name]]).cost_nusd)
    return _only(via, cheapest), {"to": cheapest, **low}


def _only(via: ModelChain, name: str) -> ModelChain:
    return replace(via, chain=[name])


async def low_budget(journal: Journal, namespace: str, fraction: float) -> dict[str, Any] | None:
    """The first limit of a Budget of ``namespace`` with less than ``fraction`` of it left:
    ``{budget, limit, left}`` (``left`` a fraction), or ``None``."""
    now = journal.clock()
    if journal.budgets is not None:
        drafts = await journal.budgets.accounts(namespace, now, journal.scope)
    else:
        drafts = await budget_accounts(journal.store, namespace, now, journal.scope)
    for draft in drafts:
        found = await journal.store.budget_accounts(namespace, prefix=draft.key)
        account = next((a for a in found if a.key == draft.key), None)
        for limit, value, spent in _limits(draft.limits, account):
            left = (value - spent) / value if value > 0 else 0.0
            if left < fraction:
                return {"budget": draft.key, "limit": limit, "left": round(max(left, 0.0), 4)}
    return None


def _limits(limits: BudgetLimits, account: BudgetAccount | None) -> list[tuple[str, int, int]]:
    """Each limit set, with what is used or held of it."""
    spent = Amount() if account is None else account.used + account.held
    given = (
        ("max_cost_usd", limits.max_cost_nusd, spent.cost_nusd),
        ("max_tokens", limits.max_tokens, spent.tokens),
        ("max_input_tokens", limits.max_input_tokens, spent.input_tokens),
        ("max_output_tokens", limits.max_output_tokens, spent.output_tokens),
    )
    return [(name, int(value), int(used)) for name, value, used in given if value is not None]
