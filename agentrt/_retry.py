"""When an HTTP request is worth retrying, and how long to wait before it.

Shared by every HTTP client of the package (the model clients and the HTTP
tool), so a rate limit or a ``Retry-After`` means the same to all of them.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RETRYABLE_STATUSES", "RETRY_AFTER_CAP_S", "equal_jitter", "parse_retry_after"]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses that are retried: rate limits, timeouts and transient server errors."""

RETRY_AFTER_CAP_S = 60.0
"""Longest wait honoured for a server's ``Retry-After``, by clients and by the loop."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header.

    Args:
        value: The header: delay seconds (an integer, or a decimal as some
            servers send) or an HTTP date.

    Returns:
        A non-negative number of seconds, or ``None`` when the header is
        absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def equal_jitter(ceiling: float) -> float:
    """A backoff between half of ``ceiling`` and ``ceiling``.

    "Equal jitter": at least half the backoff, so retries of many clients do
    not bunch up, yet each still backs off.
    """
    return ceiling / 2 + random.random() * ceiling / 2
