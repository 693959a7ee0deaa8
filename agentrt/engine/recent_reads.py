"""What one process read from the store lately, per key, read again once it is
``ttl_s`` old: how a tenant's Budgets, Policies, scheduler shares and a model
endpoint's circuit are kept near every step without a read per step. A change in
the store reaches every process within ``ttl_s``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["RecentReads"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RecentReads(Generic[K, V]):
    """Values by key, each as read at most ``ttl_s`` ago on ``clock``."""

    def __init__(self, *, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        """Keep each value for ``ttl_s`` seconds of ``clock``."""
        self._ttl_s = ttl_s
        self._clock = clock
        self._seen: dict[K, tuple[float, V]] = {}

    async def get(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        """``key``'s value: the one kept if it is fresh, else ``await read()`` (kept)."""
        seen = self._seen.get(key)
        if seen is not None and self._clock() - seen[0] < self._ttl_s:
            return seen[1]
        value = await read()
        self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key`` as read now (e.g. what a write returned)."""
        self._seen[key] = (self._clock(), value)

    def peek(self, key: K) -> V | None:
        """The value kept for ``key``, fresh or not; ``None`` if none was read."""
        seen = self._seen.get(key)
        return None if seen is None else seen[1]
