"""Tools of the hello example: plain Python functions become tools."""

from __future__ import annotations

from datetime import date


def days_until(day: str) -> int:
    """Days from 2026-01-01 until an ISO date (YYYY-MM-DD)."""
    return (date.fromisoformat(day) - date(2026, 1, 1)).days


def greet(name: str, excited: bool = False) -> str:
    """Greet someone by name."""
    return f"Hello, {name}{'!' if excited else '.'}"
