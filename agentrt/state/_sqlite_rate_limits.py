"""The SQLite store's rate buckets: each take one upsert in a writer transaction; and
the store's rate bucket methods, which :class:`~agentrt.state.sqlite.SqliteStore`
takes.

SQLite has one writer at a time across every process of the file, so a take's
upsert sees every take committed before it and none commits between its read of
the levels and its write of them.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Final, TypeVar

from agentrt.state._rate_sql import LIST_BUCKETS, bucket_of, take_row, take_sql
from agentrt.state._sqlite_part import SqlitePart
from agentrt.state._sqlite_writer import READ, WRITE
from agentrt.state.rate_limits import RateBucket, RateTake, RateTaken, taken_of

if TYPE_CHECKING:
    from agentrt.state._sqlite_ops import Ops

__all__ = ["RateBucketMethods"]

T = TypeVar("T")

_TAKE: Final = take_sql(least="min", greatest="max")


def _take(conn: sqlite3.Connection, take: RateTake, now: float) -> RateTaken:
    requests, tokens = conn.execute(_TAKE, take_row(take, now)).fetchone()
    return taken_of(take, float(requests), float(tokens))


def _list(conn: sqlite3.Connection, namespace: str, prefix: str) -> list[RateBucket]:
    return [bucket_of(row) for row in conn.execute(LIST_BUCKETS, (namespace, prefix, prefix))]


class RateBucketMethods(SqlitePart):
    """The rate bucket methods of :class:`~agentrt.state.sqlite.SqliteStore`."""

    if TYPE_CHECKING:

        @property
        def _ops(self) -> Ops: ...

    async def take_rate(self, take: RateTake, *, now: float) -> RateTaken:
        """Refill ``take``'s bucket to ``now`` and take its amounts, in one write; how
        long the taker waits for its turn (see :class:`~agentrt.state.rate_limits.RateBuckets`)."""
        return await self._submit(WRITE, _take, self._ops.conn, take, now)

    async def rate_buckets(self, namespace: str, *, prefix: str = "") -> list[RateBucket]:
        """The buckets of ``namespace`` whose key starts with ``prefix``, by key."""
        return await self._submit(READ, _list, self._ops.conn, namespace, prefix)
