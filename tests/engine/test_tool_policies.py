"""The verdict of a tenant's Policies on one tool call, as pure functions: what a rule
selects, each operator, paths that try to climb out with ``..``, the strictest effect
winning whatever the order, defaults, and calls that cannot answer a condition."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agentrt.engine.tool_policies import CallFacts, NamedPolicy, Verdict, decide, holds, refusal
from agentrt.spec.policy_spec import PolicyCondition, PolicySpec

FACTS = CallFacts(
    tenant="acme",
    principal="key:ann",
    role="user",
    agent="clerk",
    tool="files",
    own="read_file",
    arguments={"path": "/data/report.txt", "amount": 250, "currency": "EUR", "to": {"iban": "X"}},
)


def _policy(name: str = "p", **spec: Any) -> NamedPolicy:
    return NamedPolicy(name, PolicySpec.model_validate(spec))


def _cond(field: str, op: str, value: Any) -> PolicyCondition:
    return PolicyCondition.model_validate({"field": field, "op": op, "value": value})


def _args(**arguments: Any) -> CallFacts:
    return replace(FACTS, arguments=arguments)


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("/data/report.txt", True),
        ("/data", True),
        ("/data/", True),
        ("/data/./a/../b", True),
        ("//data//x", True),
        ("/data/../etc/passwd", False),
        ("/data/../../data/x", True),  # climbs above the root, which stays the root
        ("/data/a/../../etc", False),
        ("/database/x", False),  # a sibling whose name starts the same is not inside
        ("/dat", False),
        ("/etc", False),
    ],
)
def test_under_resolves_dots_so_nothing_climbs_out(path: str, inside: bool) -> None:
    assert holds(_cond("args.path", "under", "/data"), _args(path=path)) is inside
    assert holds(_cond("args.path", "not_under", "/data"), _args(path=path)) is (not inside)


@pytest.mark.parametrize(
    "path", ["data/x", "../data/x", "", "/data/a\\..\\..\\etc", "/data/\0x", "~/x", 7, None]
)
def test_a_path_that_cannot_be_checked_answers_nothing(path: Any) -> None:
    assert holds(_cond("args.path", "under", "/data"), _args(path=path)) is None
    assert holds(_cond("args.path", "not_under", "/data"), _args(path=path)) is None


def test_under_the_root_is_every_absolute_path() -> None:
    assert holds(_cond("args.path", "under", "/"), _args(path="/x/../../y")) is True


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("<", 500, True),
        ("<", 250, False),
        ("<=", 250, True),
        (">", 249.5, True),
        (">=", 251, False),
        ("==", 250, True),
        ("==", 250.0, True),
        ("!=", 250, False),
        ("in", [1, 250], True),
        ("not_in", [1, 250], False),
    ],
)
def test_numbers_compare(op: str, value: Any, expected: bool) -> None:
    assert holds(_cond("args.amount", op, value), FACTS) is expected


@pytest.mark.parametrize("amount", ["250", True, None, [250], {"v": 250}, float("nan")])
def test_an_amount_that_is_not_a_number_cannot_be_compared(amount: Any) -> None:
    assert holds(_cond("args.amount", "<", 500), _args(amount=amount)) is None


def test_values_are_compared_as_json() -> None:
    assert holds(_cond("args.flag", "==", 1), _args(flag=True)) is False  # a bool is no number
    assert holds(_cond("args.flag", "==", True), _args(flag=True)) is True
    assert holds(_cond("args.currency", "==", "eur"), FACTS) is False  # case counts
    assert holds(_cond("args.currency", "in", ["EUR", "USD"]), FACTS) is True
    assert holds(_cond("args.currency", "not_in", ["EUR", "USD"]), FACTS) is False
    assert holds(_cond("args.to.iban", "==", "X"), FACTS) is True  # inside an argument
    assert holds(_cond("args.to.bic", "==", "X"), FACTS) is None
    assert holds(_cond("args.note", "==", None), _args(note=None)) is True


def test_matches_searches_a_string_in_linear_time() -> None:
    assert holds(_cond("args.path", "matches", r"\.txt$"), FACTS) is True
    assert holds(_cond("args.amount", "matches", "2"), FACTS) is None  # not a string
    hostile = _args(path="a" * 50_000 + "!")
    assert holds(_cond("args.path", "matches", "^(a+)+$"), hostile) is False


def test_the_run_and_the_call_are_fields_too() -> None:
    assert holds(_cond("role", "not_in", ["admin"]), FACTS) is True
    assert holds(_cond("principal", "matches", "^key:"), FACTS) is True
    assert holds(_cond("agent", "==", "clerk"), FACTS) is True
    assert holds(_cond("tool", "==", "files"), FACTS) is True
    assert holds(_cond("role", "==", "user"), replace(FACTS, role=None)) is None


def test_without_a_policy_there_is_no_verdict() -> None:
    assert decide([], FACTS) is None


def test_the_strictest_selecting_rule_wins_in_any_order() -> None:
    rules = [
        {"name": "ok", "effect": "allow", "tools": ["files"]},
        {"name": "ask", "effect": "require_approval", "tools": ["fil*"]},
        {"name": "no", "effect": "deny", "tools": ["files/read_*"]},
    ]
    for order in (rules, rules[::-1], [rules[1], rules[2], rules[0]]):
        assert decide([_policy(rules=order)], FACTS) == Verdict("deny", "p", "no")
    assert decide([_policy(rules=rules[:2])], FACTS) == Verdict("require_approval", "p", "ask")
    # Across Policies too; the rule named is the first of the strictest, by Policy name.
    split = [_policy("b", rules=[rules[2]]), _policy("a", rules=[*rules[:2], rules[2]])]
    assert decide(split, FACTS) == Verdict("deny", "a", "no")


def test_what_no_rule_selects_falls_to_the_strictest_default() -> None:
    other = {"effect": "deny", "tools": ["shell"]}
    assert decide([_policy(rules=[other])], FACTS) == Verdict("allow", None, "default")
    assert decide([_policy(default="deny")], FACTS) == Verdict("deny", "p", "default")
    loose, strict = _policy("a", default="allow"), _policy("z", default="require_approval")
    assert decide([loose, strict], FACTS) == Verdict("require_approval", "z", "default")
    allowed = _policy("z", default="deny", rules=[{"effect": "allow", "agents": ["cl*"]}])
    assert decide([allowed], FACTS) == Verdict("allow", "z", "rules[0]")


def test_each_list_of_a_rule_must_name_the_call() -> None:
    def verdict(**rule: Any) -> str | None:
        found = decide([_policy(rules=[{"effect": "deny", **rule}])], FACTS)
        return found.rule if found else None

    assert verdict(agents=["clerk"], principals=["key:*"], roles=["user", "admin"]) == "rules[0]"
    assert verdict(agents=["other"]) == "default"
    assert verdict(principals=["key:bob"]) == "default"
    assert verdict(roles=["admin"]) == "default"
    assert verdict(tools=["shell", "files/write_*"]) == "default"
    anonymous = replace(FACTS, principal=None, role=None)
    found = decide([_policy(rules=[{"effect": "deny", "roles": ["user"]}])], anonymous)
    assert found is not None and found.effect == "allow"  # a run nobody known started


def test_a_condition_the_call_cannot_answer_counts_against_it() -> None:
    def effect(rule_effect: str, facts: CallFacts) -> str:
        rule = {"effect": rule_effect, "when": [{"field": "args.amount", "op": "<", "value": 500}]}
        found = decide([_policy(default="require_approval", rules=[rule])], facts)
        assert found is not None
        return found.effect

    unreadable = replace(FACTS, arguments=None)
    for facts in (_args(), _args(amount="100"), unreadable):
        assert effect("allow", facts) == "require_approval"  # not let through
        assert effect("deny", facts) == "deny"  # stopped
    assert effect("allow", _args(amount=100)) == "allow"
    assert effect("deny", _args(amount=900)) == "require_approval"


def test_a_broken_policy_refuses_every_call() -> None:
    found = decide([_policy("a", default="allow"), NamedPolicy("b", None, "bad field")], FACTS)
    assert found is not None and found.effect == "deny" and found.rule == "unreadable"
    assert refusal(found, "files") == "refused: Policy b cannot be read (bad field); apply it again"


def test_refusals_say_which_policy_and_rule() -> None:
    assert refusal(None, "files") is None
    assert refusal(Verdict("allow", "p", "ok"), "files") is None
    assert refusal(Verdict("require_approval", "p", "ask"), "files") is None
    assert refusal(Verdict("deny", "p", "no", "only under /data"), "files") == (
        "refused by Policy p (rule no): only under /data"
    )
    assert refusal(Verdict("deny", "p", "rules[1]"), "files") == (
        "refused by Policy p (rule rules[1]): this call of files is not allowed"
    )
    assert refusal(Verdict("deny", "p", "default"), "files") == (
        "refused by Policy p: no rule allows this call of files, and the tenant's default is deny"
    )
    waits = refusal(Verdict("require_approval", "p", "ask"), "files", can_wait=False)
    assert waits is not None and "a team's tool node cannot wait for one" in waits


def test_a_verdict_is_recorded_and_read_back() -> None:
    verdict = Verdict("deny", "p", "no", "why")
    assert Verdict.recorded(verdict.record()) == Verdict("deny", "p", "no")
    assert Verdict.recorded(None) is None
    assert Verdict.recorded({"effect": "maybe"}) is None
