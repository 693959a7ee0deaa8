"""Messages in plain grammar: counts and articles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from agentrt._text import count, plural, with_article

PACKAGE = Path(__file__).resolve().parents[1] / "agentrt"


@pytest.mark.parametrize(
    ("n", "noun", "expected"),
    [
        (1, "step", "1 step"),
        (0, "step", "0 steps"),
        (2, "step", "2 steps"),
        (1, "Query", "1 Query"),
        (3, "Query", "3 Queries"),
        (2, "day", "2 days"),
        (2, "process", "2 processes"),
        (2, "attempt", "2 attempts"),
        (1.5, "second", "1.5 seconds"),
        (2, "child", "2 children"),
    ],
)
def test_count(n: float, noun: str, expected: str) -> None:
    assert count(n, noun, "children" if noun == "child" else None) == expected


@pytest.mark.parametrize(
    ("noun", "expected"),
    [
        ("Agent", "an Agent"),
        ("Tool", "a Tool"),
        ("Model", "a Model"),
        ("Team", "a Team"),
        ("Query", "a Query"),
        ("idempotent tool", "an idempotent tool"),
        ("user", "a user"),
        ("one-off", "a one-off"),
        ("HTTP tool", "an HTTP tool"),
        ("MCP server", "an MCP server"),
        ("URL", "a URL"),
    ],
)
def test_with_article(noun: str, expected: str) -> None:
    assert with_article(noun) == expected


def test_plural_keeps_case() -> None:
    assert [plural(w) for w in ("Agent", "Query", "box", "RUN")] == [
        "Agents",
        "Queries",
        "boxes",
        "RUNS",
    ]


# A number or a name put before a noun by hand: "{n} steps", "attempt(s)", "a {kind}".
_HAND_MADE = [
    re.compile(r"\w\(s\)"),
    re.compile(r"\b[aA]n? \{"),
    re.compile(
        r"\{[^{}]+\} ([a-z]+ )?(steps|runs|events|blobs|sessions|turns|rounds|attempts|calls|"
        r"bytes|items|tokens|files|facts|problems|arguments|children|nodes|seconds)\b"
    ),
]


def test_no_message_builds_a_plural_or_an_article_by_hand() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.JoinedStr):
                continue
            text = "".join(
                part.value if isinstance(part, ast.Constant) else "{x}" for part in node.values
            )
            if any(p.search(text) for p in _HAND_MADE):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {text}")
    assert not found, "use agentrt._text.count / with_article:\n" + "\n".join(found)
