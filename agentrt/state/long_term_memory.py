"""Long-term memory: facts a tenant's agents remember across sessions, and search over them.

The interface is what a memory tool needs: write a fact once (by key), search
by text, list and forget. The SQLite store answers searches with FTS5 (BM25
ranking, Porter stemming), the PostgreSQL store with its full-text search (an
English ``tsvector``, ranked by ``ts_rank``); a store that ranks by embeddings
implements the same protocol, and the tool does not change.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "MemoryHit",
    "MemoryRecord",
    "MemoryStore",
    "NewMemory",
    "new_memory_id",
    "search_terms",
]


@dataclass(frozen=True, slots=True)
class NewMemory:
    """A fact to remember.

    ``key`` makes the write happen once: writing again with the same key in the
    same namespace returns the stored fact (a memory tool passes its call's
    idempotency key, so a resumed call does not store the fact twice).
    """

    namespace: str
    text: str
    tags: tuple[str, ...] = ()
    key: str | None = None
    run_id: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """A remembered fact and where it came from."""

    id: str
    namespace: str
    text: str
    tags: tuple[str, ...]
    created_at: float
    run_id: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class MemoryHit:
    """A fact found by a search; a higher ``score`` is a better match."""

    record: MemoryRecord
    score: float = field(default=0.0)


@runtime_checkable
class MemoryStore(Protocol):
    """A tenant-scoped store of facts with text search."""

    async def remember(self, memory: NewMemory, *, now: float) -> tuple[MemoryRecord, bool]:
        """Store a fact; ``(record, False)`` when its key was used already."""
        ...

    async def search_memory(
        self, namespace: str, query: str, *, limit: int = 5, tags: Sequence[str] = ()
    ) -> list[MemoryHit]:
        """Facts of ``namespace`` matching any word of ``query``, best first.

        Only facts carrying every tag in ``tags`` are considered. A query with
        no searchable word finds nothing.
        """
        ...

    async def list_memory(self, namespace: str, *, limit: int = 100) -> list[MemoryRecord]:
        """The namespace's facts, newest first."""
        ...

    async def forget(self, namespace: str, memory_id: str) -> bool:
        """Delete a fact; ``True`` if it existed."""
        ...


_WORD = re.compile(r"\w+", re.UNICODE)


def search_terms(query: str) -> list[str]:
    """The words of a free-text query, lower-cased, without repeats, in order.

    Search syntax is not passed through: a model's query such as
    ``"what's the deploy day?"`` is words to find, not an expression to parse.
    """
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        seen.setdefault(word, None)
    return list(seen)


def new_memory_id() -> str:
    """A fact id that sorts by creation time: ``mem_`` + ms timestamp + randomness."""
    return f"mem_{int(time.time() * 1000):011x}{secrets.token_hex(4)}"
