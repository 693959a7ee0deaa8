"""Retry helpers shared by the HTTP clients: which statuses retry, what Retry-After says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from agentrt._retry import RETRYABLE_STATUSES, equal_jitter, parse_retry_after


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("7") == 7
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-3") == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    past = format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(past) == 0
    future = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    seconds = parse_retry_after(future)
    assert seconds is not None and 3000 < seconds <= 3600


def test_equal_jitter_waits_between_half_and_all_of_the_ceiling() -> None:
    delays = [equal_jitter(2.0) for _ in range(200)]
    assert all(1.0 <= d <= 2.0 for d in delays)
    assert len(set(delays)) > 1  # jittered, not a fixed wait


def test_rate_limits_and_transient_server_errors_are_retried() -> None:
    assert {429, 503} <= RETRYABLE_STATUSES
    assert not {400, 401, 404} & RETRYABLE_STATUSES
