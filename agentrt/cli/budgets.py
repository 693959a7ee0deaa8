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
    """An account as shown: ``acme/chats@2026-12/session:s1`` is Budget ``chats`` in period
    ``2026-12`` for session ``s1``; ``acme/run:RUN@3`` the account of run RUN's
    children (of its turn at step 3)."""
    budget, _, period = account.key.removeprefix(f"{account.namespace}/").partition("@")
    period, _, session = period.partition("/session:")
    shown: dict[str, Any] = {"key": account.key, "budget": budget, "period": period}
    if budget.startswith("run:"):  # no period: the run's (or its turn's) children, once
        shown.update(period="run", step=int(period) if period else None)
    if session:
        shown["session"] = session
    return shown | {
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
    print(f"{'BUDGET':<32} {'PERIOD':<11} {'USED':<28} {'HELD':<28} LIMITS")
    for a in accounts:
        d = _as_dict(a)
        name = d["budget"] + (f" session {d['session']}" if "session" in d else "")
        used, held = _amount(a.used), _amount(a.held)
        print(f"{name[:32]:<32} {d['period']:<11} {used:<28} {held:<28} {_limits(a.limits)}")
    return EXIT_OK
