"""The ``memory`` tool kind: the tenant's long-term memory, offered as two tools.

``remember`` stores a fact under the call's idempotency key, so a call that is
run again after a crash finds the fact it stored instead of storing it twice.
``recall`` searches the tenant's facts (full-text in the SQLite store). Both
are scoped to the run's namespace: one tenant never sees another's facts.
"""

from __future__ import annotations

import time
from typing import Any

from agentrt.errors import ToolError
from agentrt.models.base import ToolDef
from agentrt.spec.resources import MemoryToolSpec, ToolSpec
from agentrt.state.long_term_memory import MemoryHit, MemoryStore, NewMemory
from agentrt.tools.base import ToolContext, ToolResult

__all__ = ["MemoryToolSet", "render_hits"]

REMEMBER = "remember"
RECALL = "recall"

_REMEMBER_SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "the fact, as one self-contained sentence"},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "optional labels"},
    },
    "required": ["text"],
}
_RECALL_SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "words to search the remembered facts for"},
    },
    "required": ["query"],
}


def render_hits(hits: list[MemoryHit]) -> str:
    """What the model reads from a search: one fact per line, best first."""
    if not hits:
        return "no remembered fact matches"
    return "\n".join(f"- {hit.record.text}" for hit in hits)


class MemoryToolSet:
    """A Tool of kind ``memory``: ``remember`` and ``recall`` over a :class:`MemoryStore`."""

    dynamic = False

    def __init__(self, name: str, spec: ToolSpec, store: MemoryStore) -> None:
        self.name = name
        self.spec = spec
        self.options = spec.memory or MemoryToolSpec()
        self._store = store
        definitions = [
            ToolDef(RECALL, "Search the long-term memory for facts stored earlier.", _RECALL_SCHEMA)
        ]
        if self.options.write:
            remember = ToolDef(
                REMEMBER,
                "Store a fact in long-term memory, for this and later conversations.",
                _REMEMBER_SCHEMA,
            )
            definitions.insert(0, remember)
        self._definitions = definitions

    async def definitions(self) -> list[ToolDef]:
        """``remember`` (unless ``write: false``) and ``recall``."""
        return list(self._definitions)

    async def call(self, tool: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Store or search facts of the run's namespace."""
        if tool == REMEMBER and self.options.write:
            return await self._remember(arguments, ctx)
        if tool == RECALL:
            return await self._recall(arguments, ctx)
        raise ToolError(f"{self.name} has no tool {tool!r}")

    async def _remember(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        text = arguments.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ToolError(f"{REMEMBER} needs `text`: a non-empty string")
        tags = arguments.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ToolError(f"{REMEMBER}: `tags` must be a list of strings")
        record, created = await self._store.remember(
            NewMemory(
                namespace=ctx.namespace,
                text=text.strip(),
                tags=(*self.options.tags, *tags),
                key=ctx.idempotency_key,
                run_id=ctx.run_id,
                session_id=ctx.session_id,
            ),
            now=time.time(),
        )
        trace = {"memory": record.id, "stored": created}
        return ToolResult(f"remembered ({record.id})", trace=trace)

    async def _recall(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        query = arguments.get("query")
        if not isinstance(query, str):
            raise ToolError(f"{RECALL} needs `query`: a string")
        hits = await self._store.search_memory(
            ctx.namespace, query, limit=self.options.max_results, tags=self.options.tags
        )
        trace = {"found": [hit.record.id for hit in hits]}
        return ToolResult(render_hits(hits), trace=trace)

    async def lookup(self, tool: str, ctx: ToolContext) -> ToolResult | None:
        """Not needed: ``remember`` is keyed by the call and ``recall`` only reads."""
        return None

    async def close(self) -> None:
        """Nothing to release: the store belongs to the runtime."""
