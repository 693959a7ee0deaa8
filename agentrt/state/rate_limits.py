"""Rate buckets: the token buckets that hold a Model's calls to its rate limits, kept
in the store so that every worker of a fleet takes from the same one.

A bucket (``acme/gpt``: a tenant's Model) has a level of requests and one of
tokens. Each holds at most a second's worth of its per-minute limit (its
*capacity*, ``limit / 60``) and refills continuously with the rest of the
minute's worth (``(limit - capacity) / 60`` a second), so that no 60 seconds
ever see more than the limit begin: what a bucket lets through in any ``T``
seconds is at most ``max(capacity, largest take) + rate * T``, and for
``T = 60`` that is the limit itself (a take larger than the capacity aside).

A take is one atomic write that never fails: it refills the bucket to ``now``,
takes the amounts, and answers how long the taker waits for its turn. A taker
that finds the bucket holding at least what it asks (or full, when it asks for
more than the whole capacity) goes at once; one that finds it short leaves it
in debt and waits until the refill pays its part: the takers after it see the
debt and queue behind it. So every taker writes once and sleeps once, however
many wait, and the order of the writes is the order they go in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

__all__ = [
    "RateBucket",
    "RateBuckets",
    "RateLimit",
    "RateTake",
    "RateTaken",
    "Refill",
    "refill_of",
    "taken_of",
]

_MINUTE: Final = 60.0

RateLimit = Literal["requests_per_minute", "tokens_per_minute"]
"""The two limits of a Model's ``rate_limits``."""


@dataclass(frozen=True, slots=True)
class Refill:
    """One level of a bucket: it holds at most ``capacity`` and gains ``per_s`` a second."""

    capacity: float
    per_s: float

    def need(self, amount: int) -> float:
        """What the level must hold for ``amount`` to go now: all of it, or a full
        bucket when it is more than the bucket holds."""
        return min(float(amount), self.capacity)

    def wait(self, level: float, amount: int) -> float:
        """Seconds until a bucket at ``level`` (refilled to now) holds what ``amount``
        needs (0.0: it does)."""
        return max(0.0, (self.need(amount) - level) / self.per_s)


def refill_of(per_minute: int) -> Refill:
    """The refill of a level limited to ``per_minute``: a second's worth held, the
    rest of the minute's worth refilled over the minute."""
    capacity = per_minute / _MINUTE
    return Refill(capacity, (per_minute - capacity) / _MINUTE)


@dataclass(frozen=True, slots=True)
class RateTake:
    """What a call takes from its bucket (made on first use, full), and the limits it
    is taken under (``None``: that one is not limited; the bucket keeps the latest)."""

    key: str
    namespace: str
    requests_per_minute: int | None
    tokens_per_minute: int | None
    requests: int = 1
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class RateTaken:
    """A take's answer: how long its taker waits before it goes (0.0: at once), and
    the limit it waits for (the longer wait of the two)."""

    wait_s: float
    limit: RateLimit | None = None
    value: int | None = None  # that limit's value


@dataclass(frozen=True, slots=True)
class RateBucket:
    """A bucket as stored: its levels at ``stamp`` (negative: in debt to takers that
    wait), and the limits of its latest take."""

    key: str
    namespace: str
    requests: float
    tokens: float
    stamp: float
    requests_per_minute: int | None
    tokens_per_minute: int | None


def taken_of(take: RateTake, requests_left: float, tokens_left: float) -> RateTaken:
    """The answer to ``take`` from what its bucket's levels were left at by it."""
    answer = RateTaken(0.0)
    if take.requests_per_minute is not None:
        wait = refill_of(take.requests_per_minute).wait(
            requests_left + take.requests, take.requests
        )
        if wait > 0:
            answer = RateTaken(wait, "requests_per_minute", take.requests_per_minute)
    if take.tokens_per_minute is not None:
        wait = refill_of(take.tokens_per_minute).wait(tokens_left + take.tokens, take.tokens)
        if wait > answer.wait_s:
            answer = RateTaken(wait, "tokens_per_minute", take.tokens_per_minute)
    return answer


class RateBuckets(Protocol):
    """The rate buckets part of the store contract."""

    async def take_rate(self, take: RateTake, *, now: float) -> RateTaken:
        """Refill ``take``'s bucket to ``now`` and take its amounts, in one atomic
        write; how long the taker waits for its turn.

        A bucket is made full on first use. Its time never runs back: a ``now``
        before the bucket's last take refills nothing. Concurrent takes from any
        number of processes are applied one after another, each seeing the ones
        before, so together they never go faster than the limits allow.
        """
        ...

    async def rate_buckets(self, namespace: str, *, prefix: str = "") -> list[RateBucket]:
        """The buckets of ``namespace`` whose key starts with ``prefix``, by key."""
        ...
