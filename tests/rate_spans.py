"""The check every rate limit test makes of what a model server saw: no span of time
holds more calls (or tokens) than a bucket lets begin in it."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["over_the_bucket"]


def over_the_bucket(
    arrivals: Sequence[tuple[float, float]], *, capacity: float, per_s: float, slack_s: float
) -> list[str]:
    """The spans of ``arrivals`` (``(when, amount)`` pairs: 1 a call, or its tokens) that
    hold more than a bucket of ``capacity`` refilled ``per_s`` a second lets begin in
    them: ``capacity + per_s * span``. Each span is widened by ``slack_s``, the most a
    call may take from its turn to its arrival (a process switch, the loopback)."""
    ordered = sorted(arrivals)
    problems = []
    for i, (start, _) in enumerate(ordered):
        amount = 0.0
        for end, more in ordered[i:]:
            amount += more
            allowed = capacity + per_s * (end - start + slack_s)
            if amount > allowed + 1e-9:
                problems.append(f"{amount:g} in {end - start:.3f}s (at most {allowed:.1f})")
    return problems
