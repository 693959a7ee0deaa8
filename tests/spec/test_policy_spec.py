"""A Policy file: a good one loads, each mistaken one is refused by `agentrt apply` with
the file and line, the field, what is wrong and the fix (exit 2, no traceback), and
nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from agentrt.cli.main import main
from agentrt.spec import load_text
from agentrt.spec.policy_spec import PolicyRole

HEAD = "apiVersion: agentrt.dev/v1\nkind: Policy\nmetadata: {name: payments, namespace: acme}\n"


def test_a_policy_loads_with_its_rules() -> None:
    text = HEAD + (
        "spec:\n"
        "  default: deny\n"
        "  rules:\n"
        "    - name: small-refunds\n"
        "      effect: allow\n"
        "      tools: [refund, 'files/read_*']\n"
        "      roles: [operator]\n"
        "      when:\n"
        "        - {field: args.amount, op: '<', value: 500}\n"
        "        - {field: args.path, op: under, value: /data}\n"
        "        - {field: args.currency, op: in, value: [EUR, USD]}\n"
    )
    [loaded] = load_text(text)
    spec = loaded.resource.spec
    assert loaded.resource.namespace == "acme" and spec.default == "deny"  # type: ignore[union-attr]
    [rule] = spec.rules  # type: ignore[union-attr]
    assert [(c.field, c.op, c.value) for c in rule.when] == [
        ("args.amount", "<", 500),
        ("args.path", "under", "/data"),
        ("args.currency", "in", ["EUR", "USD"]),
    ]


def test_the_roles_are_the_api_keys_roles() -> None:
    from agentrt.server.keys import ROLES

    assert get_args(PolicyRole) == ROLES


CASES = {
    "unknown op": (
        "  rules:\n    - effect: deny\n      when: [{field: args.amount, op: lt, value: 5}]\n",
        "bad.yaml:7: Policy/payments: field spec.rules[0].when[0].op",
        "'lt' is not allowed",
        "use one of: '<', '<=',",
    ),
    "a number as text": (
        "  rules:\n    - effect: deny\n      when: [{field: args.amount, op: '<', value: '5'}]\n",
        "bad.yaml:7: Policy/payments: field spec.rules[0].when[0].value",
        "`op: '<'` compares numbers, not '5'",
        "give a number, e.g. `value: 500`",
    ),
    "a directory with dots": (
        "  rules:\n    - effect: deny\n      when: [{field: args.p, op: under, value: /data/../etc}]\n",
        "bad.yaml:7: Policy/payments: field spec.rules[0].when[0].value",
        "'/data/../etc' is not written as the directory it names",
        "write `value: /etc`",
    ),
    "a relative directory": (
        "  rules:\n    - effect: deny\n      when: [{field: args.p, op: not_under, value: data}]\n",
        "bad.yaml:7: Policy/payments: field spec.rules[0].when[0].value",
        "takes an absolute directory, not 'data'",
        "e.g. `value: /data`",
    ),
    "an argument without args.": (
        "  rules:\n    - effect: deny\n      when: [{field: amount, op: '<', value: 5}]\n",
        "bad.yaml:7: Policy/payments: field spec.rules[0].when[0].field",
        "unknown condition field 'amount'",
        "`args.NAME`",
    ),
    "a bad regex": (
        "  rules:\n    - effect: deny\n      when: [{field: args.x, op: matches, value: '(a'}]\n",
        "bad.yaml:7: Policy/payments: field spec.rules[0].when[0].value",
        "not a valid regular expression",
        "correct the regex",
    ),
    "one value for in": (
        "  rules:\n    - effect: deny\n      when: [{field: args.c, op: in, value: EUR}]\n",
        "bad.yaml:7: Policy/payments: field spec.rules[0].when[0].value",
        "`op: in` takes a list of values",
        "give a list, e.g. `value: [EUR, USD]`",
    ),
    "an unknown effect": (
        "  rules:\n    - effect: block\n",
        "bad.yaml:6: Policy/payments: field spec.rules[0].effect",
        "'block' is not allowed",
        "use one of: 'allow', 'require_approval' or 'deny'",
    ),
    "an unknown role": (
        "  rules:\n    - {effect: deny, roles: [root]}\n",
        "bad.yaml:6: Policy/payments: field spec.rules[0].roles[0]",
        "'root' is not allowed",
        "'viewer', 'user', 'operator' or 'admin'",
    ),
    "a rule named twice": (
        "  rules:\n    - {name: a, effect: deny}\n    - {name: a, effect: allow}\n",
        "bad.yaml:7: Policy/payments: field spec.rules[1].name",
        "rule name 'a' is used by rules 0 and 1",
        "give each rule its own name",
    ),
    "a typo": (
        "  rules:\n    - {effect: deny, tool: [refund]}\n",
        "bad.yaml:6: Policy/payments: field spec.rules[0].tool",
        "unknown field `tool`",
        "did you mean `tools`?",
    ),
    "nothing said": (
        "  {}\n",
        "bad.yaml:5: Policy/payments: field spec",
        "a Policy with no rules and no default decides nothing",
        "add `rules:`, or `default: deny`",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_policy_names_file_field_and_fix(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, where, message, fix = CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "spec:\n" + spec)
    monkeypatch.setenv("AGENTRT_STORE", str(tmp_path / "s.db"))
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["apply", "-f", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    first, error, fixed = err.strip().splitlines()
    assert first == f"{tmp_path}/{where}", first
    assert error.startswith("  error: ") and message in error, error
    assert fixed.startswith("  fix:   ") and fix in fixed, fixed
    assert main(["get", "policies", "-n", "acme"]) == 0
    assert "payments" not in capsys.readouterr().out, "nothing stored"
