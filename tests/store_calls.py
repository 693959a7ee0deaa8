"""A store whose coroutine calls are counted by name, for tests that assert how
often the runtime or the server reads and writes (everything else passes through)."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any


class StoreCalls:
    """The wrapped store, its coroutine calls counted by name in ``counts``."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.counts: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            return await attr(*args, **kwargs)

        return counted

    def total(self) -> int:
        """Every counted call."""
        return sum(self.counts.values())
