"""Every regex field is checked at apply, naming the field; matching takes linear time."""

from __future__ import annotations

from typing import Any

import pytest

from agentrt.errors import SpecError
from agentrt.spec import parse_resource
from agentrt.spec.patterns import search

BAD = "(unclosed"


def _doc(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "agentrt.dev/v1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}


REGEX_FIELDS = {
    "spec.script[0].match": _doc(
        "Model", {"provider": "scripted", "script": [{"match": BAD, "steps": [{"content": "a"}]}]}
    ),
    "spec.loop.stop.output_matches": _doc(
        "Agent", {"model": "m", "loop": {"stop": {"output_matches": BAD}}}
    ),
    "spec.approval.when.amount": _doc(
        "Tool",
        {
            "kind": "python",
            "callable": "tests.sample_tools:charge",
            "approval": {"required": True, "when": {"amount": BAD}},
        },
    ),
    "spec.strategy.accept": _doc(
        "Team",
        {
            "strategy": {
                "kind": "planner-workers-evaluator",
                "planner": "p",
                "workers": ["w"],
                "evaluator": "e",
                "accept": BAD,
            }
        },
    ),
    "spec.nodes[1].when.matches": _doc(
        "Team",
        {
            "nodes": [
                {"name": "a", "agent": "a"},
                {"name": "b", "agent": "b", "after": ["a"], "when": {"key": "a", "matches": BAD}},
            ]
        },
    ),
    "spec.nodes[0].route.rules[0].match": _doc(
        "Team",
        {
            "nodes": [
                {
                    "name": "pick",
                    "route": {"members": ["a"], "rules": [{"match": BAD, "member": "a"}]},
                },
                {"name": "a", "agent": "a", "after": ["pick"]},
            ]
        },
    ),
}


@pytest.mark.parametrize("path", sorted(REGEX_FIELDS))
def test_an_invalid_regex_is_refused_naming_its_field(path: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_resource(REGEX_FIELDS[path])
    (issue,) = caught.value.issues
    assert issue.field_path == path
    assert issue.message.startswith("not a valid regular expression: missing )")


def test_patterns_that_need_backtracking_are_refused_with_the_reason() -> None:
    doc = _doc("Agent", {"model": "m", "loop": {"stop": {"output_matches": r"(?<=total: )\d+"}}})
    with pytest.raises(SpecError) as caught:
        parse_resource(doc)
    message = caught.value.issues[0].message
    assert "look-around" in message and "backreferences" in message


def test_matching_takes_linear_time_whatever_the_pattern() -> None:
    # Python's backtracking `re` needs about 2**n steps here: minutes at n=30,
    # longer than the universe at n=100_000. RE2 scans the text once.
    text = "a" * 100_000 + "!"
    assert not search(r"^(a+)+$", text)
    assert not search(r"(a|aa)+$", text)
    assert search(r"(a+)+!$", text)


def test_common_syntax_is_accepted() -> None:
    assert search(r"(?i)hi to (\w+)", "Say HI to Ada")
    assert search(r"^\s*ACCEPT", "  ACCEPT: fine")
    assert search(r"\bDONE\b", "all DONE.")
    assert search(r"^[0-9]{3,}$", "1200") and not search(r"^[0-9]{3,}$", "12")
    assert search(r"(?P<word>x)", "x")
