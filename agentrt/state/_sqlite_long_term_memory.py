"""The SQLite store's long-term memory: facts in ``memories``, searched with FTS5; and
the store's memory methods, which :class:`~agentrt.state.sqlite.SqliteStore` takes.

Like the other operations, these run on the store's writer thread, inside the
transaction it opens for their batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from agentrt._json import dumps_str, loads
from agentrt.state._sqlite_part import SqlitePart
from agentrt.state._sqlite_writer import READ, WRITE
from agentrt.state.long_term_memory import (
    MemoryHit,
    MemoryRecord,
    NewMemory,
    new_memory_id,
    search_terms,
)

__all__ = ["MemoryMethods", "MemoryOps"]

T = TypeVar("T")

_COLS = "m.id, m.namespace, m.text, m.tags, m.created_at, m.run_id, m.session_id"
# A fact carries every wanted tag when no wanted tag is missing from its list.
_HAS_TAGS = (
    " AND NOT EXISTS (SELECT 1 FROM json_each(?) AS w "
    "WHERE w.value NOT IN (SELECT value FROM json_each(m.tags)))"
)


def _record(row: Sequence[Any]) -> MemoryRecord:
    return MemoryRecord(
        id=row[0],
        namespace=row[1],
        text=row[2],
        tags=tuple(loads(row[3])),
        created_at=row[4],
        run_id=row[5],
        session_id=row[6],
    )


def _match_expression(query: str) -> str | None:
    """An FTS5 query matching any word of ``query`` (each word quoted, so no syntax)."""
    terms = search_terms(query)
    if not terms:
        return None
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


class MemoryOps:
    """Long-term memory operations on one connection (writer thread only)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Wrap ``conn``."""
        self.conn = conn

    def remember(self, memory: NewMemory, now: float) -> tuple[MemoryRecord, bool]:
        if memory.key is not None:
            row = self.conn.execute(
                f"SELECT {_COLS} FROM memories AS m WHERE m.namespace = ? AND m.key = ?",
                (memory.namespace, memory.key),
            ).fetchone()
            if row is not None:
                return _record(row), False
        record = MemoryRecord(
            id=new_memory_id(),
            namespace=memory.namespace,
            text=memory.text,
            tags=tuple(dict.fromkeys(memory.tags)),
            created_at=now,
            run_id=memory.run_id,
            session_id=memory.session_id,
        )
        self.conn.execute(
            "INSERT INTO memories (id, namespace, text, tags, key, run_id, session_id, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.namespace,
                record.text,
                dumps_str(list(record.tags)),
                memory.key,
                record.run_id,
                record.session_id,
                now,
            ),
        )
        return record, True

    def search_memory(
        self, namespace: str, query: str, limit: int, tags: Sequence[str]
    ) -> list[MemoryHit]:
        expression = _match_expression(query)
        if expression is None:
            return []
        sql = (
            f"SELECT {_COLS}, bm25(memories_fts) AS rank FROM memories_fts "
            "JOIN memories AS m ON m.pk = memories_fts.rowid "
            "WHERE memories_fts MATCH ? AND m.namespace = ?"
        )
        params: list[Any] = [expression, namespace]
        if tags:
            sql += _HAS_TAGS
            params.append(dumps_str(list(tags)))
        sql += " ORDER BY rank, m.pk LIMIT ?"
        params.append(limit)
        # bm25() is lower for better matches; a score reads better the other way.
        return [MemoryHit(_record(row), -float(row[7])) for row in self.conn.execute(sql, params)]

    def list_memory(self, namespace: str, limit: int) -> list[MemoryRecord]:
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM memories AS m WHERE m.namespace = ? "
            "ORDER BY m.created_at DESC, m.pk DESC LIMIT ?",
            (namespace, limit),
        )
        return [_record(row) for row in rows]

    def forget(self, namespace: str, memory_id: str) -> bool:
        cur = self.conn.execute(
            "DELETE FROM memories WHERE namespace = ? AND id = ?", (namespace, memory_id)
        )
        return cur.rowcount > 0


class MemoryMethods(SqlitePart):
    """The long-term memory methods of :class:`~agentrt.state.sqlite.SqliteStore`."""

    if TYPE_CHECKING:

        @property
        def _memory(self) -> MemoryOps: ...

    async def remember(self, memory: NewMemory, *, now: float) -> tuple[MemoryRecord, bool]:
        """Store a fact; ``(record, False)`` when its key was used already."""
        return await self._submit(WRITE, self._memory.remember, memory, now)

    async def search_memory(
        self, namespace: str, query: str, *, limit: int = 5, tags: Sequence[str] = ()
    ) -> list[MemoryHit]:
        """Facts of ``namespace`` matching any word of ``query``, best first (FTS5 BM25)."""
        return await self._submit(
            READ, self._memory.search_memory, namespace, query, limit, tuple(tags)
        )

    async def list_memory(self, namespace: str, *, limit: int = 100) -> list[MemoryRecord]:
        """The namespace's facts, newest first."""
        return await self._submit(READ, self._memory.list_memory, namespace, limit)

    async def forget(self, namespace: str, memory_id: str) -> bool:
        """Delete a fact; ``True`` if it existed."""
        return await self._submit(WRITE, self._memory.forget, namespace, memory_id)
