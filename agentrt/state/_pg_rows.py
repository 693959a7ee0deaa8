"""Statements on a connection the PostgreSQL store borrowed (its rows become records
by :mod:`agentrt.state._rows`, shared with SQLite).

Every statement goes through a cursor with psycopg's tuple rows, whatever row
factory an injected pool's connections were made with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from agentrt.state._rows import RUN_COLS, SESSION_COLS, resource_record, run_record, session_record

__all__ = [
    "RUN_COLS",
    "SESSION_COLS",
    "Conn",
    "execute",
    "execute_many",
    "fetch_all",
    "fetch_one",
    "resource_record",
    "run_record",
    "session_record",
]

Conn: TypeAlias = AsyncConnection[Any]
Params: TypeAlias = Sequence[Any] | dict[str, Any]


async def fetch_one(conn: Conn, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
    """The first row of one statement, or ``None``."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(sql, params)
    return await cur.fetchone()


async def fetch_all(conn: Conn, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    """Every row of one statement."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(sql, params)
    return await cur.fetchall()


async def execute(conn: Conn, sql: str, params: Params = ()) -> int:
    """Run one statement; the number of rows it changed."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(sql, params)
    return cur.rowcount


async def execute_many(conn: Conn, sql: str, rows: Iterable[Params]) -> int:
    """Run one statement for each of ``rows`` (pipelined by psycopg); rows changed."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.executemany(sql, rows)
    return cur.rowcount
