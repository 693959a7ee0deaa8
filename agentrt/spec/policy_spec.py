"""The spec of a ``Policy`` resource: which tool calls of a tenant's runs are allowed,
refused, or wait for a person's approval.

A Policy holds the runs of its namespace (the tenant). Each rule selects calls by
the Tool called, the agent (or team) whose run calls it, who started the run
(its principal, ``key:NAME``) and that key's role, and by conditions on the
call's arguments; its ``effect`` says what happens to the calls it selects.
Conditions are data, never code: a field, an operator from a fixed set and a
value. How rules of several Policies combine is
:func:`agentrt.engine.tool_policies.decide`'s (the strictest effect wins).
"""

from __future__ import annotations

import math
import posixpath
from typing import Any, Final, Literal

from pydantic import Field, field_validator, model_validator

from agentrt.spec._base import NAME, Strict
from agentrt.spec._checks import field_problem
from agentrt.spec.patterns import check_regex

__all__ = [
    "EFFECTS",
    "PolicyCondition",
    "PolicyEffect",
    "PolicyOperator",
    "PolicyRole",
    "PolicyRule",
    "PolicySpec",
    "normal_path",
]

PolicyEffect = Literal["allow", "require_approval", "deny"]
EFFECTS: Final[tuple[PolicyEffect, ...]] = ("allow", "require_approval", "deny")
"""The effects from the least strict to the strictest: of the rules that select a call,
the strictest one decides it."""

PolicyOperator = Literal[
    "<", "<=", ">", ">=", "==", "!=", "in", "not_in", "under", "not_under", "matches"
]
PolicyRole = Literal["viewer", "user", "operator", "admin"]  # an API key's roles

_ORDERED: Final = frozenset({"<", "<=", ">", ">="})
_LISTED: Final = frozenset({"in", "not_in"})
_PATHS: Final = frozenset({"under", "not_under"})
_FACTS: Final = ("principal", "role", "agent", "tool")
_FIELD_HELP: Final = (
    "name what the condition tests: `args.NAME` (an argument of the call; `args.a.b` "
    "inside one), `principal`, `role`, `agent` or `tool`"
)


def normal_path(path: str) -> str | None:
    """An absolute POSIX path with ``.``, ``..`` and repeated slashes resolved, as
    text (no link is followed); ``None`` for one that is relative, or holds a NUL or
    a backslash (which a tool might read as a separator), so no lexical check of it
    can be trusted."""
    if not path.startswith("/") or "\0" in path or "\\" in path:
        return None
    return "/" + posixpath.normpath(path).lstrip("/")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class PolicyCondition(Strict):
    """A test of one field of a call: `{field: args.amount, op: "<", value: 500}`.

    ``<``, ``<=``, ``>``, ``>=`` compare numbers; ``==``, ``!=`` a value (a string, a
    number, a boolean or null); ``in``, ``not_in`` a list of them; ``under``,
    ``not_under`` a path against an absolute directory, after ``.`` and ``..`` are
    resolved; ``matches`` searches a regex (RE2) in a string.
    """

    field: str = Field(description="`args.NAME` (`args.a.b` inside one), principal, role, "
                       "agent or tool")  # fmt: skip
    op: PolicyOperator = Field(description="how the field is tested against `value`")
    value: Any = Field(
        description="a number, string, boolean or null; a list for in/not_in; an absolute "
        "directory for under/not_under; a regex for matches"
    )

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str) -> str:
        path = value.split(".")
        if value in _FACTS or (len(path) > 1 and path[0] == "args" and all(path[1:])):
            return value
        raise field_problem(f"unknown condition field {value!r}", [], _FIELD_HELP)

    @model_validator(mode="after")
    def _value_fits_op(self) -> PolicyCondition:
        op, value = self.op, self.value
        if op in _ORDERED:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not math.isfinite(value):
                raise field_problem(
                    f"`op: {op!r}` compares numbers, not {value!r}", ["value"],
                    "give a number, e.g. `value: 500`",
                )  # fmt: skip
        elif op in _LISTED:
            if not isinstance(value, list) or not value or not all(map(_scalar, value)):
                raise field_problem(
                    f"`op: {op}` takes a list of values, not {value!r}", ["value"],
                    "give a list, e.g. `value: [EUR, USD]`",
                )  # fmt: skip
        elif op in _PATHS:
            self._check_directory(value)
        elif op == "matches":
            if not isinstance(value, str):
                raise field_problem(
                    f"`op: matches` takes a regex, not {value!r}", ["value"],
                    "give a regex as a string, e.g. `value: '^inv-[0-9]+$'`",
                )  # fmt: skip
            try:
                check_regex(value)
            except ValueError as exc:
                raise field_problem(str(exc), ["value"], "correct the regex") from None
        elif not _scalar(value):
            raise field_problem(
                f"`op: {op}` compares one value, not {value!r}", ["value"],
                "give a string, number, boolean or null (for a list, use `in` or `not_in`)",
            )  # fmt: skip
        return self

    def _check_directory(self, value: Any) -> None:
        normal = normal_path(value) if isinstance(value, str) else None
        if normal is None:
            raise field_problem(
                f"`op: {self.op}` takes an absolute directory, not {value!r}", ["value"],
                "give a path from the root with '/' between names, e.g. `value: /data`",
            )  # fmt: skip
        if normal != value:
            raise field_problem(
                f"{value!r} is not written as the directory it names", ["value"],
                f"write `value: {normal}`",
            )  # fmt: skip


class PolicyRule(Strict):
    """Which calls a rule selects, and its `effect` on them.

    A call is selected when each list given names it (an empty list selects every
    call) and each condition in ``when`` holds. ``tools``, ``agents`` and
    ``principals`` take globs (``*``, ``?``, ``[abc]``). A condition a call cannot
    answer (the argument is missing or of another type, the run has no principal)
    counts against the call: a ``deny`` or ``require_approval`` rule selects it, an
    ``allow`` rule does not.
    """

    name: str | None = Field(
        default=None, pattern=NAME, description="named in refusals and the log; else rules[N]"
    )
    effect: PolicyEffect = Field(description="allow, require_approval or deny")
    tools: list[str] = Field(
        default_factory=list,
        description="Tool names (globs); `NAME/TOOL` names one tool of a Tool offering several",
    )
    agents: list[str] = Field(default_factory=list, description="the Agent or Team run (globs)")
    principals: list[str] = Field(
        default_factory=list, description="who started the run, e.g. `key:ann`, `key:ops-*`"
    )
    roles: list[PolicyRole] = Field(
        default_factory=list, description="the role of the API key that started the run"
    )
    when: list[PolicyCondition] = Field(
        default_factory=list, description="conditions that must all hold"
    )
    reason: str | None = Field(
        default=None, max_length=500, description="what a refused call's model is told"
    )

    @field_validator("tools", "agents", "principals")
    @classmethod
    def _no_empty_glob(cls, values: list[str]) -> list[str]:
        for i, glob in enumerate(values):
            if not glob.strip():
                raise field_problem("an empty name selects nothing", [i], "remove it, or use `*`")
        return values


class PolicySpec(Strict):
    """Rules over the tool calls of the namespace's runs, and a default for the rest.

    Of all rules of all the tenant's Policies that select a call, the strictest
    effect decides it: ``deny``, then ``require_approval``, then ``allow``; the order
    of rules and Policies never changes the outcome. When none selects it, the
    strictest ``default`` of the tenant's Policies does; with none set, the call is
    allowed.
    """

    default: PolicyEffect | None = Field(
        default=None, description="for calls no rule selects: allow, require_approval or deny"
    )
    rules: list[PolicyRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _says_something(self) -> PolicySpec:
        if self.default is None and not self.rules:
            raise field_problem(
                "a Policy with no rules and no default decides nothing", [],
                "add `rules:`, or `default: deny` (or allow, require_approval)",
            )  # fmt: skip
        first: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            if rule.name is not None and first.setdefault(rule.name, i) != i:
                raise field_problem(
                    f"rule name {rule.name!r} is used by rules {first[rule.name]} and {i}",
                    ["rules", i, "name"], "give each rule its own name",
                )  # fmt: skip
        return self

    def rule_label(self, index: int) -> str:
        """How rule ``index`` is named in refusals and the log: its name, else
        ``rules[N]``."""
        return self.rules[index].name or f"rules[{index}]"
