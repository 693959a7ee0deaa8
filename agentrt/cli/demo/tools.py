"""Real tools used by the demo agent: arithmetic, a unit table, and a notes file."""

from __future__ import annotations

import ast
import operator
import os
from pathlib import Path

import platformdirs

from agentrt.tools.base import ToolContext

__all__ = ["calculator", "lookup_note", "save_note", "unit_facts"]

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        if isinstance(node.op, ast.Pow) and abs(_eval(node.right)) > 64:
            raise ValueError("exponent too large")
        result: float | int = _OPS[type(node.op)](_eval(node.left), _eval(node.right))  # type: ignore[operator]
        return result
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        unary: float | int = _OPS[type(node.op)](_eval(node.operand))  # type: ignore[operator]
        return unary
    raise ValueError(f"unsupported expression: {ast.dump(node)[:60]}")


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression (+ - * / // % **) exactly."""
    value = _eval(ast.parse(expression, mode="eval"))
    return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"


_FACTS = {
    "leap year": "a leap year has 366 days",
    "day": "a day has 24 hours",
    "hour": "an hour has 60 minutes",
    "minute": "a minute has 60 seconds",
}


def unit_facts(topic: str) -> str:
    """Look up a fact about a unit of time (leap year, day, hour, minute)."""
    fact = _FACTS.get(topic.strip().lower())
    if fact is None:
        raise KeyError(f"no fact about {topic!r}; known: {', '.join(_FACTS)}")
    return fact


def _notes_file() -> Path:
    path = Path(os.environ.get("AGENTRT_DEMO_NOTES") or platformdirs.user_data_dir("agentrt"))
    path = path / "demo-notes.txt" if path.suffix != ".txt" else path
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_note(text: str, ctx: ToolContext) -> str:
    """Append a note to the notes file, once per idempotency key."""
    path = _notes_file()
    key = ctx.idempotency_key
    if path.exists() and any(line.startswith(key + "\t") for line in path.read_text().splitlines()):
        return f"note already saved ({key})"
    with path.open("a", encoding="utf-8") as notes:
        notes.write(f"{key}\t{text}\n")
    return f"saved to {path.name}"


def lookup_note(ctx: ToolContext) -> str | None:
    """Whether the note with this idempotency key was written (used after a crash)."""
    path = _notes_file()
    key = ctx.idempotency_key
    if path.exists() and any(line.startswith(key + "\t") for line in path.read_text().splitlines()):
        return f"saved to {path.name}"
    return None
