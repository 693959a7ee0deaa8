"""Statements on a connection the PostgreSQL store borrowed, and its rows as records.

Every statement goes through a cursor with psycopg's tuple rows, whatever row
factory an injected pool's connections were made with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, TypeAlias

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from agentrt._json import loads
from agentrt.state.records import ResourceRecord, RunRecord, SessionRecord, Usage

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

RUN_COLS: Final = (
    "id, namespace, agent, status, created_at, updated_at, session_id, turn, reason, "
    "finished_at, idempotency_key, parent_run, fork_step, lease_owner, lease_expires, "
    "lease_token, cancel_requested, last_seq, input_tokens, output_tokens, cost_usd, "
    "model_calls, tool_calls"
)
"""The columns :func:`run_record` reads, in its order."""

SESSION_COLS: Final = "id, namespace, created_at, parent_session, parent_turn, next_turn"


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


def run_record(row: Sequence[Any]) -> RunRecord:
    """A run from a row of :data:`RUN_COLS`."""
    return RunRecord(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        row[15],
        row[16],
        row[17],
        Usage(row[18], row[19], row[20], row[21], row[22]),
    )


def session_record(row: Sequence[Any]) -> SessionRecord:
    """A session from a row of :data:`SESSION_COLS`."""
    return SessionRecord(*row)


def resource_record(row: Sequence[Any]) -> ResourceRecord:
    """A resource from ``kind, namespace, name, generation, body, created_at, updated_at``."""
    return ResourceRecord(row[0], row[1], row[2], row[3], loads(row[4]), row[5], row[6])
