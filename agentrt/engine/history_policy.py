"""Session memory: which of a session's earlier turns the model is given, under a budget.

A session's history grows with every turn; a model's context does not. The
agent's ``memory.session`` policy decides what the next run sees:

- ``full``: every earlier turn (the default, for short sessions).
- ``window``: the latest whole turns whose estimated size fits ``max_tokens``.
- ``summary``: when the turns do not fit, the older ones are folded into a
  summary written by a model, and the latest ``keep_turns`` stay word for word.
  The summary is recorded in the run that made it (``memory.summary``), so the
  next run starts from it, and resume and replay read it instead of asking the
  model again.

Planning is pure: it takes the turns and returns the messages, plus the turns
a new summary must cover when one is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agentrt.errors import UsageError
from agentrt.models.base import Message, ModelRequest
from agentrt.models.tokens import estimate_tokens, text_of
from agentrt.spec.resources import ModelSpec, SessionMemory

__all__ = [
    "HistoryPlan",
    "Summary",
    "Turn",
    "flatten",
    "history_budget",
    "plan_history",
    "summary_message",
    "summary_request",
    "with_summary",
]

SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
SUMMARY_REQUEST = "Summarise this conversation."


@dataclass(frozen=True, slots=True)
class Summary:
    """A summary of a session's turns up to and including run ``through``."""

    text: str
    through: str


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier run of a session: its messages, and the summary it started from."""

    run_id: str
    messages: list[Message]
    summary: Summary | None = None
    replicas: dict[str, str] = field(default_factory=dict)  # Model -> the replica it last used


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """What the next run is given, or what must be summarised first.

    With ``fold`` empty, ``messages`` is the history. Otherwise a summary of
    ``base`` (if any) and ``fold`` is needed; :func:`with_summary` then builds
    the history from it and ``kept``.
    """

    messages: list[Message]
    base: Summary | None = None
    fold: list[Turn] = field(default_factory=list)
    kept: list[Turn] = field(default_factory=list)


def history_budget(policy: SessionMemory, model: ModelSpec, model_name: str) -> int | None:
    """Tokens the earlier turns may take (``None``: no limit, policy ``full``).

    Raises:
        UsageError: a limiting policy with neither ``max_tokens`` nor the model's
            ``context_window`` to derive it from.
    """
    if policy.policy == "full":
        return None
    if policy.max_tokens is not None:
        return policy.max_tokens
    if model.context_window is not None:
        return model.context_window // 2
    raise UsageError(
        f"memory.session.policy {policy.policy!r} needs a budget: set "
        f"memory.session.max_tokens on the Agent, or context_window on Model {model_name!r}"
    )


def flatten(turns: Sequence[Turn]) -> list[Message]:
    """Every message of ``turns``, in order."""
    return [message for turn in turns for message in turn.messages]


def _window(turns: Sequence[Turn], budget: int) -> list[Turn]:
    """The latest whole turns whose messages fit ``budget`` tokens."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        size = estimate_tokens(turn.messages)
        if used + size > budget:
            break
        kept.append(turn)
        used += size
    kept.reverse()
    return kept


def summary_message(summary: Summary) -> Message:
    """How a summary is given to the model: a system message before the kept turns."""
    return {"role": "system", "content": SUMMARY_PREFIX + summary.text}


def _latest_summary(turns: Sequence[Turn]) -> tuple[Summary | None, int]:
    """The newest recorded summary, and the index of the first turn after what it covers."""
    positions = {turn.run_id: i for i, turn in enumerate(turns)}
    for turn in reversed(turns):
        if turn.summary is not None and turn.summary.through in positions:
            return turn.summary, positions[turn.summary.through] + 1
    return None, 0


def plan_history(policy: SessionMemory, turns: Sequence[Turn], budget: int | None) -> HistoryPlan:
    """The history the next run gets under ``policy``, or the summary it needs first."""
    if budget is None:
        return HistoryPlan(flatten(turns))
    if policy.policy == "window":
        return HistoryPlan(flatten(_window(turns, budget)))
    base, start = _latest_summary(turns)
    rest = list(turns[start:])
    head = [summary_message(base)] if base is not None else []
    if estimate_tokens(head + flatten(rest)) <= budget:
        return HistoryPlan(head + flatten(rest))
    split = max(0, len(rest) - policy.keep_turns)
    fold, kept = rest[:split], rest[split:]
    if not fold:  # only kept turns left: they give way to the budget, oldest first
        return HistoryPlan(with_summary(base, kept, budget))
    return HistoryPlan([], base, fold, kept)


def with_summary(summary: Summary | None, kept: Sequence[Turn], budget: int) -> list[Message]:
    """A summary (cut to half the budget at most) then the latest kept turns that fit."""
    if summary is None:
        return flatten(_window(kept, budget))
    head = summary_message(_cut(summary, budget // 2))
    room = max(0, budget - estimate_tokens([head]))
    return [head, *flatten(_window(kept, room))]


def _cut(summary: Summary, tokens: int) -> Summary:
    limit = max(0, tokens * 4 - len(SUMMARY_PREFIX))
    if len(summary.text) <= limit:
        return summary
    return Summary(summary.text[:limit], summary.through)


def _transcript(base: Summary | None, fold: Sequence[Turn]) -> str:
    lines: list[str] = []
    if base is not None:
        lines += ["Earlier summary:", base.text, ""]
    for message in flatten(fold):
        text = text_of(message.get("content"))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                text += f" [calls {function.get('name')}({function.get('arguments')})]"
        lines.append(f"{message.get('role')}: {text}")
    return "\n".join(lines)


def summary_request(
    model: str, base: Summary | None, fold: Sequence[Turn], words: int
) -> ModelRequest:
    """The model request that folds ``base`` and ``fold`` into one summary."""
    instructions = (
        "You condense conversations so they can continue later. Keep facts, names, numbers, "
        f"decisions and open questions. Answer with the summary only, at most {words} words."
    )
    return ModelRequest(
        model=model,
        messages=[
            {"role": "system", "content": instructions},
            {"role": "user", "content": f"{SUMMARY_REQUEST}\n\n{_transcript(base, fold)}"},
        ],
        tools=[],
    )
