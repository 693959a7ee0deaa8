"""Which budget accounts a run's steps draw on besides its tenant's Budgets.

- A ``Budget`` with ``agent: NAME`` is drawn on only by that Agent's runs.
- A ``Budget`` with ``per: session`` has an account for each session
  (``acme/per-chat@2026-12/session:s-42``), drawn on by that session's turns.
- A child run (an agent tool's call, a team node) draws on the accounts of the
  runs above it as well as its own limits, so what children spend together never
  passes what their parent had left. A parent's account is:

  * for an agent run, one per turn of tool calls (``acme/run:RUN@STEP``), limited
    to what the run had left when the turn started (less the turn's own calls):
    the run takes no model step while its children run, so what they spend is
    all the turn spends;
  * for a team run, one for the run (``acme/run:RUN``), limited to the team's
    budgets, which its own route steps and tool nodes draw on as well.

  A child records the accounts it draws on in its first event (``draws_on``), so
  every execution of it, on any worker, after any crash, draws on the same ones,
  and its own children inherit them. It records its parent's session too
  (``budget_session``): a turn's children draw on the session's ``per: session``
  Budgets, so a session cannot overspend through them either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any

from agentrt.engine.events import RUN_CREATED
from agentrt.spec.budget_spec import BudgetSpec
from agentrt.spec.resources import Budgets
from agentrt.state.base import Event, RunRecord
from agentrt.state.budget_ledger import NANO_USD, AccountDraft, BudgetLimits

__all__ = [
    "NO_SCOPE",
    "BudgetScope",
    "drafts_data",
    "drafts_of",
    "run_account",
    "scope_of",
]


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """What a run's steps draw on, besides every plain Budget of its tenant: the
    Budgets of its ``agent``, its ``session``'s account of each ``per: session``
    Budget, and the accounts ``above`` it (its parents', its own as a team)."""

    agent: str | None = None
    session: str | None = None
    above: tuple[AccountDraft, ...] = ()

    def key(self, namespace: str, name: str, spec: BudgetSpec, now: float) -> str | None:
        """The account of Budget ``name`` a step of this scope at ``now`` draws on,
        or ``None``: the Budget is another Agent's, or per session and the run is in
        none."""
        if spec.agent is not None and spec.agent != self.agent:
            return None
        key = f"{namespace}/{name}@{spec.window(now)}"
        if spec.per == "session":
            # The session id goes last and whole: two sessions' accounts never share a key.
            return None if self.session is None else f"{key}/session:{self.session}"
        return key


NO_SCOPE = BudgetScope()
"""A scope that selects only the tenant-wide Budgets applying to every run."""


def _limits(budgets: Budgets, tool_calls_taken: int) -> BudgetLimits | None:
    cost = budgets.max_cost_usd
    calls = budgets.max_tool_calls
    limits = BudgetLimits(
        max_tokens=budgets.max_tokens,
        max_cost_nusd=None if cost is None else int(cost * NANO_USD),
        max_tool_calls=None if calls is None else max(0, calls - tool_calls_taken),
    )
    return None if limits == BudgetLimits() else limits


def run_account(
    namespace: str,
    run_id: str,
    left: Budgets | None,
    *,
    step: int | None = None,
    tool_calls_taken: int = 0,
) -> AccountDraft | None:
    """The account children of ``run_id`` draw on (of its turn at ``step``, for an agent
    run; ``None``: of the team run), limited to ``left`` (less the turn's own
    ``tool_calls_taken``); ``None`` when ``left`` limits none of tokens, cost or tool
    calls."""
    limits = None if left is None else _limits(left, tool_calls_taken)
    if limits is None:
        return None
    where = f"run:{run_id}" if step is None else f"run:{run_id}@{step}"
    return AccountDraft(f"{namespace}/{where}", namespace, limits)


def drafts_data(drafts: Sequence[AccountDraft]) -> list[dict[str, Any]]:
    """``drafts`` as a run's first event records them."""
    return [{"key": d.key, "limits": list(astuple(d.limits))} for d in drafts]


def drafts_of(namespace: str, data: Any) -> tuple[AccountDraft, ...]:
    """The drafts a run's first event records (nothing recorded: none)."""
    if not isinstance(data, list):
        return ()
    return tuple(
        AccountDraft(str(item["key"]), namespace, BudgetLimits(*item["limits"])) for item in data
    )


def scope_of(run: RunRecord, events: Sequence[Event], team: Budgets | None) -> BudgetScope:
    """The scope of ``run``'s steps: its Agent (``team``: a team run's budgets, and it
    has no Agent), its session (a child run's: its parent's, as its first event
    says), the accounts its first event draws on and, for a team run whose budgets
    limit something, the team's own."""
    first = events[0] if events else None
    above: tuple[AccountDraft, ...] = ()
    session = run.session_id
    if first is not None and first.type == RUN_CREATED:
        above = drafts_of(run.namespace, first.data.get("draws_on"))
        session = session or first.data.get("budget_session")
    if team is not None and (own := run_account(run.namespace, run.id, team)) is not None:
        above = (*above, own)
    return BudgetScope(None if team is not None else run.agent, session, above)
