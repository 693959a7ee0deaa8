"""A provider's prefix cache, simulated: how many prompt tokens an earlier request
already computed, for :class:`~agentrt.models.testserver.ModelTestServer`.

Providers (OpenAI, vLLM, SGLang) keep the attention state of prompts they served
and reuse it for a new prompt that begins the same way; OpenAI reports the tokens
reused as ``usage.prompt_tokens_details.cached_tokens``. This cache works on whole
messages: a prompt is its tools, then its messages in order, and the prefix shared
with an earlier request is the longest run of leading messages identical to that
request's (role, text, tool calls and all), with identical tools. Its size is
counted as the test server counts prompt tokens (one token per four characters,
see :mod:`agentrt.models.tokens`), whole tokens only, never more than the prompt.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final

from agentrt._json import dumps
from agentrt.models.base import Message
from agentrt.models.tokens import estimate_tokens, message_chars

__all__ = ["PrefixCache"]

_KEEP: Final = 100_000  # prefixes remembered, the least recently used forgotten first


def _link(previous: bytes, part: Any) -> bytes:
    return hashlib.blake2b(previous + dumps(part), digest_size=16).digest()


class PrefixCache:
    """The prompt prefixes one server has served, and what a new prompt shares with them."""

    def __init__(self, keep: int = _KEEP) -> None:
        """Remember at most ``keep`` prefixes."""
        self._keep = keep
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0  # prompt tokens served from the cache, in all
        self.prompt_tokens = 0  # prompt tokens of every request looked up, in all

    def cached_tokens(self, messages: Sequence[Message], tools: Any) -> int:
        """The tokens of ``messages`` (offered ``tools``) an earlier prompt shares."""
        chain = self._chain(messages, tools)
        shared = 0
        with self._lock:
            for index, key in enumerate(chain):
                if key not in self._seen:
                    break
                self._seen.move_to_end(key)
                shared = index
        chars = sum(message_chars(m) for m in messages[:shared])
        tokens = min(chars // 4, estimate_tokens(messages))
        with self._lock:
            self.hits += tokens
            self.prompt_tokens += estimate_tokens(messages)
        return tokens

    def served(self, messages: Sequence[Message], tools: Any) -> None:
        """Remember a prompt that was answered: later ones may share its prefix."""
        with self._lock:
            for key in self._chain(messages, tools):
                self._seen[key] = None
                self._seen.move_to_end(key)
            while len(self._seen) > self._keep:
                self._seen.popitem(last=False)

    @staticmethod
    def _chain(messages: Sequence[Message], tools: Any) -> list[bytes]:
        """Key ``i``: the tools and the first ``i`` messages (key 0: the tools alone)."""
        keys = [_link(b"", tools or [])]
        for message in messages:
            keys.append(_link(keys[-1], message))
        return keys
