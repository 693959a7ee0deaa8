"""A tool call's verdict under its tenant's ``Policy`` resources, as pure functions, and
the Policies as one process's steps read them.

:func:`decide` is the whole rule. Of the rules of all the tenant's Policies that
select a call, the strictest effect decides it: ``deny``, then
``require_approval``, then ``allow``; the first such rule (Policies by name, rules
in their order) is the one named. When none selects it, the strictest ``default``
of the tenant's Policies decides, and with none set the call is allowed. A
tenant without a Policy gets no verdict at all: nothing is recorded.

A condition a call cannot answer (the argument is missing, of another type, the
arguments are not a JSON object, the run has no principal) counts against the
call: it holds for a ``deny`` or ``require_approval`` rule and fails for an
``allow`` one. So a malformed call is never let through by a rule that meant to
stop it. A Policy stored that no longer validates refuses every call, saying so.

The gateway asks for verdicts before a turn's calls run (see
:func:`agentrt.engine.gateway.policy_verdicts`); the verdict is recorded with the
step's first event, and a step the log has is never decided again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Final

from pydantic import ValidationError

from agentrt.engine.recent_reads import RecentReads
from agentrt.spec.patterns import search
from agentrt.spec.policy_spec import (
    EFFECTS,
    PolicyCondition,
    PolicyEffect,
    PolicyRule,
    PolicySpec,
    normal_path,
)
from agentrt.state.base import Store

__all__ = [
    "CallFacts",
    "NamedPolicy",
    "PolicyBook",
    "Verdict",
    "decide",
    "holds",
    "refusal",
    "tenant_policies",
]

_UNKNOWN: Final = None  # what a condition a call cannot answer evaluates to


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What a verdict depends on: one tool call, and the run that makes it.

    ``tool`` is the Tool resource's name, ``own`` the tool's own name in it (an MCP
    server's tool), ``arguments`` the call's (``None``: not a JSON object).
    """

    tenant: str
    principal: str | None
    role: str | None
    agent: str
    tool: str
    own: str
    arguments: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class NamedPolicy:
    """A stored Policy: its name and spec, or why it no longer validates (``broken``)."""

    name: str
    spec: PolicySpec | None
    broken: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the tenant's Policies say of a call, and which rule (or default) said it."""

    effect: PolicyEffect
    policy: str | None  # None: no Policy set a default, and none selected the call
    rule: str  # the rule's name, rules[N], "default", or "unreadable"
    reason: str | None = None

    def record(self) -> dict[str, Any]:
        """What the step's log records of the verdict."""
        return {"effect": self.effect, "policy": self.policy, "rule": self.rule}

    @classmethod
    def recorded(cls, data: Mapping[str, Any] | None) -> Verdict | None:
        """The verdict a step's event recorded, if any."""
        if not isinstance(data, Mapping) or data.get("effect") not in EFFECTS:
            return None
        return cls(data["effect"], data.get("policy"), str(data.get("rule", "")))


def refusal(verdict: Verdict | None, tool: str, *, can_wait: bool = True) -> str | None:
    """What the model is told of a call ``verdict`` refuses (``None``: not refused).

    A call that must wait for approval where nobody can be waited for (a team's
    tool node, ``can_wait=False``) is refused too.
    """
    if verdict is None or verdict.effect == "allow":
        return None
    if verdict.effect == "require_approval":
        if can_wait:
            return None
        return (
            f"refused: Policy {verdict.policy} ({verdict.rule}) requires a person's approval "
            f"of this call of {tool}, and a team's tool node cannot wait for one; call it "
            "from an agent node instead"
        )
    if verdict.rule == "unreadable":
        return f"refused: {verdict.reason}"
    if verdict.rule == "default":
        return (
            f"refused by Policy {verdict.policy}: no rule allows this call of {tool}, "
            "and the tenant's default is deny"
        )
    why = verdict.reason or f"this call of {tool} is not allowed"
    return f"refused by Policy {verdict.policy} (rule {verdict.rule}): {why}"


def decide(policies: Sequence[NamedPolicy], facts: CallFacts) -> Verdict | None:
    """The verdict of ``policies`` (a tenant's) on a call; ``None`` without any."""
    if not policies:
        return None
    best: Verdict | None = None
    for policy in sorted(policies, key=lambda p: p.name):
        if policy.spec is None:
            reason = f"Policy {policy.name} cannot be read ({policy.broken}); apply it again"
            return Verdict("deny", policy.name, "unreadable", reason)
        for index, rule in enumerate(policy.spec.rules):
            if _stricter(rule.effect, best) and selects(rule, facts):
                best = Verdict(rule.effect, policy.name, policy.spec.rule_label(index), rule.reason)
    if best is not None:
        return best
    for policy in sorted(policies, key=lambda p: p.name):
        assert policy.spec is not None
        default = policy.spec.default
        if default is not None and _stricter(default, best):
            best = Verdict(default, policy.name, "default")
    return best or Verdict("allow", None, "default")


def _stricter(effect: PolicyEffect, than: Verdict | None) -> bool:
    return than is None or EFFECTS.index(effect) > EFFECTS.index(than.effect)


def selects(rule: PolicyRule, facts: CallFacts) -> bool:
    """Whether ``rule`` selects the call: every list given names it and every condition
    holds (one the call cannot answer holds unless the rule allows)."""
    if rule.tools and not any(
        fnmatchcase(facts.tool, g) or fnmatchcase(f"{facts.tool}/{facts.own}", g)
        for g in rule.tools
    ):
        return False
    if rule.agents and not any(fnmatchcase(facts.agent, g) for g in rule.agents):
        return False
    if rule.principals and (
        facts.principal is None or not any(fnmatchcase(facts.principal, g) for g in rule.principals)
    ):
        return False
    if rule.roles and facts.role not in rule.roles:
        return False
    unknown_holds = rule.effect != "allow"
    for condition in rule.when:
        found = holds(condition, facts)
        if not (found if found is not None else unknown_holds):
            return False
    return True


def holds(condition: PolicyCondition, facts: CallFacts) -> bool | None:
    """Whether ``condition`` holds for the call; ``None`` when the call cannot answer it."""
    found, value = _field(condition.field, facts)
    if not found:
        return _UNKNOWN
    op, wanted = condition.op, condition.value
    if op in ("==", "!="):
        return _same(value, wanted) == (op == "==")
    if op in ("in", "not_in"):
        return any(_same(value, w) for w in wanted) == (op == "in")
    if op == "matches":
        return search(wanted, value) if isinstance(value, str) else _UNKNOWN
    if op in ("under", "not_under"):
        path = normal_path(value) if isinstance(value, str) else None
        if path is None:
            return _UNKNOWN
        inside = wanted == "/" or path == wanted or path.startswith(wanted + "/")
        return inside == (op == "under")
    if not _number(value):
        return _UNKNOWN
    compared: dict[str, bool] = {"<": value < wanted, "<=": value <= wanted,
                                 ">": value > wanted, ">=": value >= wanted}  # fmt: skip
    return compared[op]


def _field(name: str, facts: CallFacts) -> tuple[bool, Any]:
    """The value of a condition's field, and whether the call has one."""
    if not name.startswith("args."):
        fact = {"principal": facts.principal, "role": facts.role, "agent": facts.agent,
                "tool": facts.tool}[name]  # fmt: skip
        return fact is not None, fact
    value: Any = facts.arguments
    for key in name.split(".")[1:]:
        if not isinstance(value, Mapping) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(value: Any, wanted: Any) -> bool:
    """JSON equality: a boolean is never a number, ``1 == 1.0``."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value == wanted
    if _number(value) and _number(wanted):
        return bool(value == wanted)
    return type(value) is type(wanted) and bool(value == wanted)


async def tenant_policies(store: Store, namespace: str) -> tuple[NamedPolicy, ...]:
    """The Policies of ``namespace`` as stored now."""
    found: list[NamedPolicy] = []
    for record in await store.list_resources("Policy", namespace):
        try:
            found.append(NamedPolicy(record.name, PolicySpec.model_validate(record.body["spec"])))
        except (ValidationError, KeyError, TypeError) as exc:
            found.append(NamedPolicy(record.name, None, str(exc).splitlines()[0]))
    return tuple(found)


class PolicyBook:
    """The Policies of each tenant as one process's tool steps are decided by (an
    executor's, over its one store): read at most once every ``ttl_s`` per tenant. A
    Policy applied, changed or deleted decides the calls of every process within
    ``ttl_s``; a call decided before stays decided."""

    def __init__(self, *, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        """Read the Policies again once ``ttl_s`` passed on ``clock``."""
        self._read = RecentReads[str, tuple[NamedPolicy, ...]](ttl_s=ttl_s, clock=clock)

    async def policies(self, store: Store, namespace: str) -> tuple[NamedPolicy, ...]:
        """The Policies of ``namespace`` in ``store``, as read at most ``ttl_s`` ago."""
        return await self._read.get(namespace, lambda: tenant_policies(store, namespace))
