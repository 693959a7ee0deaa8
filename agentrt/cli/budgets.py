"""``agentrt budgets``: what each Budget of a tenant allows, used and holds, period by
period, read from the store's budget ledger."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from agentrt._text import count
from agentrt.cli._shared import EXIT_OK, print_json, with_store
from agentrt.state.budget_ledger import NANO_USD, Amount, BudgetAccount, BudgetLimits

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``agentrt budgets`` to the command line's subcommands."""
    b = sub.add_parser(
        "budgets", help="each Budget's limits, and what its runs used and hold, by period"
    )
    b.add_argument("-n", "--namespace", default="default", help="the tenant (default)")
    b.set_defaults(handler=_cmd_budgets)


def _limits(limits: BudgetLimits) -> str:
    shown = [
        f"{name}={value}"
        for name, value in (
            ("max_tokens", limits.max_tokens),
            ("max_input_tokens", limits.max_input_tokens),
            ("max_output_tokens", limits.max_output_tokens),
            ("max_tool_calls", limits.max_tool_calls),
        )
        if value is not None
    ]
    if limits.max_cost_nusd is not None:
        shown.insert(0, f"max_cost_usd={limits.max_cost_nusd / NANO_USD:g}")
    return " ".join(shown)


def _amount(a: Amount) -> str:
    return f"${a.cost_nusd / NANO_USD:.6f} {count(a.tokens, 'token')}"


def _as_dict(account: BudgetAccount) -> dict[str, Any]:
    budget, _, period = account.key.rpartition("@")
    return {
        "budget": budget.removeprefix(f"{account.namespace}/"),
        "period": period,
        "limits": {k: v for k, v in _fields(account.limits).items() if v is not None},
        "used": _fields(account.used),
        "held": _fields(account.held),
    }


def _fields(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


async def _cmd_budgets(args: argparse.Namespace) -> int:
    store = await with_store(args, read_only=True)
    try:
        accounts = await store.budget_accounts(args.namespace)
    finally:
        await store.close()
    if args.json:
        print_json([_as_dict(a) for a in accounts])
        return EXIT_OK
    if not accounts:
        print(f"no Budget of namespace {args.namespace!r} was drawn on yet")
        return EXIT_OK
    print(f"{'BUDGET':<20} {'PERIOD':<11} {'USED':<28} {'HELD':<28} LIMITS")
    for a in accounts:
        d = _as_dict(a)
        used, held = _amount(a.used), _amount(a.held)
        print(f"{d['budget'][:20]:<20} {d['period']:<11} {used:<28} {held:<28} {_limits(a.limits)}")
    return EXIT_OK
