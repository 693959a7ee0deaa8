"""How a model step came to the Model that answered, as ``runs show`` draws it: the
Models tried, a degradation while a Budget ran low, the Agent's routing and the
check of its answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["checked", "degraded", "route", "routed"]


def route(tried: Sequence[Mapping[str, Any]]) -> str:
    """Each Model a step tried, in order, and how it went: ``m http_429 → backup answered``."""
    return " → ".join(
        f"{r.get('model')} {r.get('outcome')}"
        + (f" x{r['attempts']}" if int(r.get("attempts") or 0) > 1 else "")
        + (" (probe)" if r.get("probe") else "")
        for r in tried
    )


def degraded(decided: Mapping[str, Any]) -> str:
    """Why a step asked only the cheapest Model: ``budget B: max_cost_usd 8% left, to cheap``."""
    left = float(decided.get("left") or 0.0) * 100
    return (
        f"budget {decided.get('budget')}: {decided.get('limit')} {left:.0f}% left, "
        f"only {decided.get('to')} asked"
    )


def routed(decided: Mapping[str, Any]) -> str:
    """Why the Agent's routing picked a step's Model: ``rule 2 (label hard): large``."""
    by, model = decided.get("by"), decided.get("model")
    if by == "rule":
        label = f" (label {decided['label']})" if decided.get("label") else ""
        return f"rule {decided.get('rule')}{label}: {model}"
    if by == "escalated":
        came = decided.get("from") or {}
        return f"escalated from step {came.get('step')} ({came.get('model')}): {model}"
    return f"{by}: {model}"  # default: the Agent's model; tier: the tier escalated to


def checked(verdict: Mapping[str, Any]) -> str:
    """The routing check's verdict: ``failed: it is not JSON (...) → large``."""
    if verdict.get("passed"):
        return "passed"
    then = (
        f" → {verdict['escalate_to']}"
        if verdict.get("escalate_to")
        else (", accepted (last tier)" if verdict.get("accepted") else ", the run fails")
    )
    return f"failed: {verdict.get('why')}{then}"
