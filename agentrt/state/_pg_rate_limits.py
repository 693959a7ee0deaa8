"""The PostgreSQL store's rate buckets: each take one upsert whose update computes the
levels from the row it has locked; and the store's rate bucket methods, which
:class:`~agentrt.state.postgres.PostgresStore` takes.

``INSERT ... ON CONFLICT DO UPDATE`` locks the bucket's row and evaluates its
``SET`` on the row as the take before it left it, so takes from any number of
workers are applied one after another; nothing is read first and written
after (no check-then-increment), so no two takes ever see the same level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from agentrt.state._pg_rows import Conn, fetch_all, fetch_one
from agentrt.state._rate_sql import LIST_BUCKETS, bucket_of, take_row, take_sql
from agentrt.state._session_sql import pg
from agentrt.state.rate_limits import RateBucket, RateTake, RateTaken, taken_of

if TYPE_CHECKING:
    from agentrt.state._pg_runner import Runner

__all__ = ["RateBucketMethods"]

_TAKE: Final = pg(take_sql(least="LEAST", greatest="GREATEST"))
_LIST: Final = pg(LIST_BUCKETS)


async def _take(conn: Conn, take: RateTake, now: float) -> RateTaken:
    row = await fetch_one(conn, _TAKE, take_row(take, now))
    assert row is not None  # an upsert returns its row
    return taken_of(take, float(row[0]), float(row[1]))


async def _list(conn: Conn, namespace: str, prefix: str) -> list[RateBucket]:
    return [bucket_of(row) for row in await fetch_all(conn, _LIST, (namespace, prefix, prefix))]


def _no_runs(_: object) -> tuple[str, ...]:
    return ()  # a take wakes no run's watch


class RateBucketMethods:
    """The rate bucket methods of :class:`~agentrt.state.postgres.PostgresStore`."""

    if TYPE_CHECKING:
        _run: Runner

    async def take_rate(self, take: RateTake, *, now: float) -> RateTaken:
        """Refill ``take``'s bucket to ``now`` and take its amounts, in one write; how
        long the taker waits for its turn (see :class:`~agentrt.state.rate_limits.RateBuckets`)."""
        return await self._run.write(_no_runs, _take, take, now)

    async def rate_buckets(self, namespace: str, *, prefix: str = "") -> list[RateBucket]:
        """The buckets of ``namespace`` whose key starts with ``prefix``, by key."""
        return await self._run.read(_list, namespace, prefix)
