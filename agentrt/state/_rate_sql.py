"""The rate buckets' SQL and rows, the same for both SQL backends but for the names
of two functions.

Written with ``?`` placeholders (SQLite's); the PostgreSQL store swaps them for
``%s``. A take is one upsert whose update computes the bucket's new levels from
the row it locks (``RETURNING`` them), so no take ever reads a level another one
is about to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from agentrt.state.rate_limits import RateBucket, RateTake, refill_of

__all__ = ["BUCKET_COLS", "LIST_BUCKETS", "bucket_of", "take_row", "take_sql"]

BUCKET_COLS: Final = (
    "key, namespace, requests, tokens, stamp, requests_per_minute, tokens_per_minute"
)
LIST_BUCKETS: Final = (
    f"SELECT {BUCKET_COLS} FROM rate_buckets "
    "WHERE namespace = ? AND substr(key, 1, length(?)) = ? ORDER BY key"
)
_LEVEL: Final = (
    "{least}(?, rate_buckets.{level} + ? * {greatest}(0.0, excluded.stamp - rate_buckets.stamp))"
    " - ?"
)


def take_sql(*, least: str, greatest: str) -> str:
    """The take's upsert in a dialect whose smaller and larger of two values are the
    functions ``least`` and ``greatest`` (SQLite: ``min``, ``max``)."""
    levels = {
        level: _LEVEL.format(least=least, greatest=greatest, level=level)
        for level in ("requests", "tokens")
    }
    return (
        f"INSERT INTO rate_buckets ({BUCKET_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (key) DO UPDATE SET requests = {levels['requests']}, "
        f"tokens = {levels['tokens']}, stamp = {greatest}(rate_buckets.stamp, excluded.stamp), "
        "requests_per_minute = excluded.requests_per_minute, "
        "tokens_per_minute = excluded.tokens_per_minute RETURNING requests, tokens"
    )


def _level(per_minute: int | None, amount: int) -> tuple[float, float, float]:
    """Capacity, refill a second and amount of one level (an unlimited one: nothing)."""
    if per_minute is None:
        return 0.0, 0.0, 0.0
    refill = refill_of(per_minute)
    return refill.capacity, refill.per_s, float(amount)


def take_row(take: RateTake, now: float) -> tuple[Any, ...]:
    """The parameters of the take's upsert: a new bucket starts full, less the take."""
    requests = _level(take.requests_per_minute, take.requests)
    tokens = _level(take.tokens_per_minute, take.tokens)
    return (
        take.key, take.namespace, requests[0] - requests[2], tokens[0] - tokens[2], now,
        take.requests_per_minute, take.tokens_per_minute, *requests, *tokens,
    )  # fmt: skip


def bucket_of(row: Sequence[Any]) -> RateBucket:
    """A bucket from a row of :data:`BUCKET_COLS`."""
    return RateBucket(row[0], row[1], float(row[2]), float(row[3]), float(row[4]), row[5], row[6])
