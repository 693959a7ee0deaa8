"""The PostgreSQL store's long-term memory: facts in ``memories``, searched with
PostgreSQL's full-text search.

Each fact's text and tags are written with an English ``tsvector`` (stemmed, stop
words dropped: "rotating" finds "rotation"). A query is its words only, each
quoted into a ``tsquery`` and joined by OR, so no search syntax from a model's
query reaches the parser; facts are ranked by ``ts_rank``, best first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from agentrt.state._pg_rows import Conn, execute, fetch_all, fetch_one
from agentrt.state.long_term_memory import (
    MemoryHit,
    MemoryRecord,
    NewMemory,
    new_memory_id,
    search_terms,
)

__all__ = ["MemoryOps", "tsquery_of"]

_COLS: Final = "m.id, m.namespace, m.text, m.tags, m.created_at, m.run_id, m.session_id"
# The text search configuration of the index and of every query (they must agree).
_CONFIG: Final = "english"
_INSERT: Final = (
    "INSERT INTO memories (id, namespace, text, tags, key, run_id, session_id, created_at, "
    f"search) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, to_tsvector('{_CONFIG}', %s)) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)


def _record(row: Sequence[Any]) -> MemoryRecord:
    return MemoryRecord(
        id=row[0],
        namespace=row[1],
        text=row[2],
        tags=tuple(row[3]),
        created_at=row[4],
        run_id=row[5],
        session_id=row[6],
    )


def tsquery_of(query: str) -> str | None:
    """A ``to_tsquery`` input matching any word of ``query``, or ``None`` for none.

    Words are ``\\w+`` runs (no quote, operator or backslash), each quoted.
    """
    terms = search_terms(query)
    if not terms:
        return None
    return " | ".join(f"'{term}'" for term in terms)


class MemoryOps:
    """Long-term memory operations (coroutines of a borrowed connection)."""

    async def remember(
        self, conn: Conn, memory: NewMemory, now: float
    ) -> tuple[MemoryRecord, bool]:
        if memory.key is not None:
            found = await self._by_key(conn, memory.namespace, memory.key)
            if found is not None:
                return found, False
        record = MemoryRecord(
            id=new_memory_id(),
            namespace=memory.namespace,
            text=memory.text,
            tags=tuple(dict.fromkeys(memory.tags)),
            created_at=now,
            run_id=memory.run_id,
            session_id=memory.session_id,
        )
        searched = " ".join((record.text, *record.tags))
        inserted = await fetch_one(
            conn,
            _INSERT,
            (
                record.id,
                record.namespace,
                record.text,
                list(record.tags),
                memory.key,
                record.run_id,
                record.session_id,
                now,
                searched,
            ),
        )
        if inserted is None and memory.key is not None:
            # The same key was written meanwhile (committed before this insert ended).
            found = await self._by_key(conn, memory.namespace, memory.key)
            if found is not None:
                return found, False
        return record, True

    async def _by_key(self, conn: Conn, namespace: str, key: str) -> MemoryRecord | None:
        row = await fetch_one(
            conn,
            f"SELECT {_COLS} FROM memories AS m WHERE m.namespace = %s AND m.key = %s",
            (namespace, key),
        )
        return None if row is None else _record(row)

    async def search_memory(
        self, conn: Conn, namespace: str, query: str, limit: int, tags: Sequence[str]
    ) -> list[MemoryHit]:
        expression = tsquery_of(query)
        if expression is None:
            return []
        sql = (
            f"SELECT {_COLS}, ts_rank(m.search, q) AS rank "
            f"FROM memories AS m, to_tsquery('{_CONFIG}', %s) AS q "
            "WHERE m.search @@ q AND m.namespace = %s"
        )
        params: list[Any] = [expression, namespace]
        if tags:
            sql += " AND m.tags @> %s::text[]"
            params.append(list(tags))
        sql += " ORDER BY rank DESC, m.pk LIMIT %s"
        params.append(limit)
        return [
            MemoryHit(_record(row), float(row[7])) for row in await fetch_all(conn, sql, params)
        ]

    async def list_memory(self, conn: Conn, namespace: str, limit: int) -> list[MemoryRecord]:
        rows = await fetch_all(
            conn,
            f"SELECT {_COLS} FROM memories AS m WHERE m.namespace = %s "
            "ORDER BY m.created_at DESC, m.pk DESC LIMIT %s",
            (namespace, limit),
        )
        return [_record(row) for row in rows]

    async def forget(self, conn: Conn, namespace: str, memory_id: str) -> bool:
        deleted = await execute(
            conn, "DELETE FROM memories WHERE namespace = %s AND id = %s", (namespace, memory_id)
        )
        return deleted > 0
