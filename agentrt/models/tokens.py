"""How many tokens a conversation takes, estimated without a provider's tokenizer.

Memory policies need a size before any model sees the messages, for any
provider. The estimate is one token per four characters of text and tool-call
arguments (the usual rule of thumb for English under BPE tokenizers); the
scripted provider and the test model server report usage with the same count,
so a policy's budget and the usage a run records agree in tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from agentrt.models.base import Message

__all__ = ["estimate_tokens", "message_chars", "text_of", "tokens_of_chars"]


def text_of(content: Any) -> str:
    """The text of a message's ``content`` (a string, ``None`` or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)


def message_chars(message: Message) -> int:
    """Characters of one message's text and of its tool calls' arguments."""
    total = len(text_of(message.get("content")))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            total += len(text_of(function.get("arguments")))
    return total


def tokens_of_chars(chars: int) -> int:
    """The estimate for ``chars`` characters (at least one token)."""
    return max(1, math.ceil(chars / 4))


def estimate_tokens(messages: Iterable[Message]) -> int:
    """The estimated prompt size of ``messages``, in tokens."""
    return tokens_of_chars(sum(message_chars(m) for m in messages))
