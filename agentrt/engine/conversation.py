"""Rebuild a run's conversation from its events (the log stores deltas only)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from agentrt import _json
from agentrt.engine import events as ev
from agentrt.models.base import Message, ModelResponse
from agentrt.state.base import Event

__all__ = ["CONTINUE_PROMPT", "continuation", "conversation_of", "history_digest"]

CONTINUE_PROMPT = (
    "Your reply was cut off by the output limit. Continue it exactly where it stopped, "
    "without repeating anything."
)
"""What the loop asks after a reply cut off by the output limit (``loop.on_truncated``)."""


def continuation() -> Message:
    """The user message that asks the model to go on with a reply that was cut off."""
    return {"role": "user", "content": CONTINUE_PROMPT}


def _was_cut(reply: ModelResponse) -> bool:
    """A reply the loop continues when asked to: text cut off, no tool calls."""
    return reply.finish_reason == "length" and not reply.tool_calls


def conversation_of(events: Iterable[Event]) -> list[Message]:
    """The user, assistant and tool messages of one run, in order (no system prompt)."""
    messages: list[Message] = []
    call_ids: dict[int, str] = {}
    # Parallel tool calls may finish in any order; the conversation lists their
    # results in call (step) order, as the live loop does.
    pending: dict[int, Message] = {}
    cut = False  # the previous reply was cut off, so the one after it continues it
    asides: set[int] = set()  # model steps that are not the loop's (a session summary)

    def flush() -> None:
        messages.extend(pending[step] for step in sorted(pending))
        pending.clear()

    for event in events:
        if event.type == ev.RUN_CREATED:
            messages.append({"role": "user", "content": event.data["input"]})
        elif event.type == ev.MODEL_CALL and "kind" in event.data and event.step is not None:
            asides.add(event.step)
        elif event.type == ev.MODEL_RESULT and event.step not in asides:
            flush()
            if cut:
                messages.append(continuation())
            reply = ModelResponse.from_dict(event.data)
            messages.append(reply.assistant_message())
            cut = _was_cut(reply)
        elif event.type == ev.TOOL_CALL and event.step is not None:
            call_ids[event.step] = event.data["id"]
        elif event.type == ev.TOOL_RESULT and event.step is not None:
            pending[event.step] = {
                "role": "tool",
                "tool_call_id": call_ids.get(event.step, ""),
                "content": event.data.get("output", ""),
            }
    flush()
    return messages


def history_digest(messages: list[Message]) -> str:
    """A short fingerprint of a conversation, to detect a changed history on resume."""
    return hashlib.blake2b(_json.dumps(messages), digest_size=8).hexdigest()
