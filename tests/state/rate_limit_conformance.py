"""The rate buckets part of the store conformance suite (listed in ``conformance.CHECKS``):
a take goes at once while its bucket holds enough and otherwise gets the turn the
refill pays for; a take larger than the bucket leaves it in debt; the bucket's time
never runs back; and takes racing from two stores on one database are applied one
after another, so no two get the same turn."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from agentrt.state.rate_limits import RateTake, RateTaken, refill_of

if TYPE_CHECKING:
    from tests.state.conformance import Harness

__all__ = ["RATE_LIMIT_CHECKS"]

# 600 a minute: a bucket of 10 (a second's worth), refilled 590/60 a second, so that
# any 60 s hold at most 10 + 590 = 600 takes.
RPM = 600
SLOT = 60 / (RPM - RPM / 60)  # the seconds one request refills in


def _take(key: str = "a/m", rpm: int | None = RPM, tpm: int | None = None, tokens: int = 0,
          namespace: str = "a") -> RateTake:  # fmt: skip
    return RateTake(key, namespace, rpm, tpm, 1, tokens)


async def check_a_bucket_goes_at_once_then_gives_turns(h: Harness) -> None:
    """A new bucket is full: its capacity of takes go at once; each take after that
    waits one refill more than the one before; time refills what it took."""
    s = h.store
    assert refill_of(RPM).capacity == 10 and refill_of(RPM).per_s == pytest.approx(1 / SLOT)
    first = [await s.take_rate(_take(), now=100.0) for _ in range(12)]
    assert first[:10] == [RateTaken(0.0)] * 10
    assert [t.wait_s for t in first[10:]] == pytest.approx([SLOT, 2 * SLOT])
    assert {t.limit for t in first[10:]} == {"requests_per_minute"}
    assert {t.value for t in first[10:]} == {RPM}
    # Twelve seconds later the bucket is full again (never more than full).
    later = [await s.take_rate(_take(), now=112.0) for _ in range(11)]
    assert later[:10] == [RateTaken(0.0)] * 10
    assert later[10].wait_s == pytest.approx(SLOT)
    [bucket] = await s.rate_buckets("a")
    assert (bucket.key, bucket.namespace, bucket.stamp) == ("a/m", "a", 112.0)
    assert bucket.requests == pytest.approx(-1.0)  # owed to the one that waits
    assert (bucket.requests_per_minute, bucket.tokens_per_minute) == (RPM, None)


async def check_a_take_larger_than_the_bucket_leaves_it_in_debt(h: Harness) -> None:
    """Tokens: a take of more than the bucket holds waits for a full bucket, not for
    more than it can hold, and those after it wait out the debt; with both limits the
    longer wait wins and is named."""
    s = h.store
    tpm = 6000  # holds 100 tokens, refills 5900/60 a second
    per_s = refill_of(tpm).per_s
    big = await s.take_rate(_take(rpm=None, tpm=tpm, tokens=250), now=10.0)
    assert big == RateTaken(0.0)
    after = await s.take_rate(_take(rpm=None, tpm=tpm, tokens=50), now=10.0)
    assert after.limit == "tokens_per_minute" and after.value == tpm
    assert after.wait_s == pytest.approx((150 + 50) / per_s)
    both = await s.take_rate(_take(key="a/both", rpm=60, tpm=tpm, tokens=10), now=10.0)
    assert both == RateTaken(0.0)
    again = await s.take_rate(_take(key="a/both", rpm=60, tpm=tpm, tokens=10), now=10.0)
    # requests: 1 held, 0 left, a request refills in 60/59 s; tokens: 90 left
    assert again == RateTaken(pytest.approx(60 / 59), "requests_per_minute", 60)


async def check_a_bucket_never_runs_back_and_follows_the_latest_limits(h: Harness) -> None:
    """A take stamped before the bucket's last one refills nothing; the bucket keeps
    the limits of its latest take (a lower one caps it at once); buckets are listed
    by namespace and key prefix; a level without a limit costs nothing."""
    s = h.store
    for _ in range(10):
        await s.take_rate(_take(), now=50.0)
    early = await s.take_rate(_take(), now=40.0)  # a clock behind: no refill, no credit
    assert early.wait_s == pytest.approx(SLOT)
    [bucket] = await s.rate_buckets("a")
    assert bucket.stamp == 50.0
    # Lowered to 60 a minute: the bucket holds one; the debt of one stands.
    lower = await s.take_rate(_take(rpm=60), now=50.0)
    assert lower.wait_s == pytest.approx(2 * 60 / 59)
    await s.take_rate(_take("a/n", rpm=None, tpm=600, tokens=1), now=1.0)
    await s.take_rate(_take("b/m", namespace="b"), now=1.0)
    assert [b.key for b in await s.rate_buckets("a")] == ["a/m", "a/n"]
    assert [b.key for b in await s.rate_buckets("a", prefix="a/n")] == ["a/n"]
    assert [b.key for b in await s.rate_buckets("b")] == ["b/m"]
    [tokens_only] = await s.rate_buckets("a", prefix="a/n")
    assert tokens_only.requests == 0.0 and tokens_only.requests_per_minute is None
    assert tokens_only.tokens == pytest.approx(9.0)


async def check_racing_takes_never_share_a_turn(h: Harness) -> None:
    """Sixty takes race on one bucket from two stores on one database: ten go at
    once and the fifty others get fifty different turns, one refill apart, so in any
    span of T seconds at most 10 + T / SLOT of them go; then the same again at a
    later moment, with the debt of the first race still owed."""
    peer = await h.open_peer()
    try:
        stores = [h.store, peer]
        for now, owed in ((1000.0, 0), (1000.5, 50)):
            taken = await asyncio.gather(
                *(stores[i % 2].take_rate(_take(), now=now) for i in range(60))
            )
            waits = sorted(t.wait_s for t in taken)
            refilled = 0.5 / SLOT if owed else 0.0  # what the half second paid back
            going_now = 0 if owed else 10
            expected = [0.0] * going_now + [
                (k + owed - refilled) * SLOT for k in range(1, 61 - going_now)
            ]
            assert waits == pytest.approx(expected, abs=1e-9)
        [bucket] = await h.store.rate_buckets("a")
        assert bucket.requests == pytest.approx(10 - 120 + 0.5 / SLOT)
    finally:
        await peer.close()


RATE_LIMIT_CHECKS = [
    check_a_bucket_goes_at_once_then_gives_turns,
    check_a_take_larger_than_the_bucket_leaves_it_in_debt,
    check_a_bucket_never_runs_back_and_follows_the_latest_limits,
    check_racing_takes_never_share_a_turn,
]
"""The rate bucket checks, in a stable order."""
