"""The spec of a ``Budget`` resource: what a tenant may spend in a day, a month or in
all, across all of its runs on every worker (or those of one Agent, or each session
on its own).

Each model step reserves its worst case against every Budget of its tenant
before it calls the model, and settles to what it used when its result is
recorded (see :mod:`agentrt.state.budget_ledger`), so concurrent runs never
together pass a Budget's limits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, model_validator

from agentrt.spec._base import Strict

__all__ = ["BudgetPer", "BudgetPeriod", "BudgetSpec"]

BudgetPeriod = Literal["day", "month", "total"]
BudgetPer = Literal["tenant", "session"]


class BudgetSpec(Strict):
    """What a tenant's runs may use together in each period (a UTC day or month, or all).

    ``total``: for as long as the Budget exists. Tokens and cost are reserved by
    every model step before its call, a tool call by every tool call before its
    intent is recorded (each attempt is a call, as a run counts it).

    ``agent``: only the runs of that Agent draw on it (else every run of the tenant).
    ``per: session``: each session has an account of its own under these limits,
    which its turns draw on (a run outside a session draws nothing on it).
    """

    period: BudgetPeriod = Field(default="month", description="day, month (UTC) or total")
    max_tokens: int | None = Field(default=None, ge=0, description="input plus output tokens")
    max_input_tokens: int | None = Field(default=None, ge=0)
    max_output_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0, description="from the Models' prices")
    max_tool_calls: int | None = Field(default=None, ge=0, description="each attempt counts")
    agent: str | None = Field(
        default=None, min_length=1, description="only this Agent's runs draw on it"
    )
    per: BudgetPer = Field(
        default="tenant",
        description="tenant: one account for all its runs; session: one for each session",
    )

    @model_validator(mode="after")
    def _limits_something(self) -> BudgetSpec:
        limits = (
            self.max_tokens, self.max_input_tokens, self.max_output_tokens,
            self.max_cost_usd, self.max_tool_calls,
        )  # fmt: skip
        if all(limit is None for limit in limits):
            raise ValueError(
                "a Budget limits something: set max_tokens, max_input_tokens, "
                "max_output_tokens, max_cost_usd or max_tool_calls"
            )
        return self

    def window(self, now: float) -> str:
        """The period ``now`` (Unix seconds) falls in: ``2026-12-03``, ``2026-12`` or
        ``total``."""
        if self.period == "total":
            return "total"
        at = datetime.fromtimestamp(now, UTC)
        return at.strftime("%Y-%m-%d" if self.period == "day" else "%Y-%m")
