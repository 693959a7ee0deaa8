"""Model clients and tool sets shared by the runs of one spec, and retired with it.

Making a tool set can start a process (an MCP server over stdio) and a model
client holds connections, so runs of one spec share them. When a resource is
re-applied with a changed spec, the next run makes new ones; the old ones are
closed as soon as no execution uses them, so a changed MCP Tool's old server
process does not live on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["SharedByName"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Version(Generic[T]):
    key: bytes
    value: T
    users: int = 0
    retired: bool = False


@dataclass
class SharedByName(Generic[T]):
    """One live value per name and spec; older specs' values closed once unused.

    ``get`` returns the value for ``(name, key)`` (``key``: the spec's identity),
    making it on first use. ``acquire``/``release`` bracket an execution that
    uses values, so a retired one is closed only when its last user is done.
    """

    close_value: Callable[[T], Awaitable[None]]
    _current: dict[Hashable, _Version[T]] = field(default_factory=dict)
    _retired: list[_Version[T]] = field(default_factory=list)
    _by_id: dict[int, _Version[T]] = field(default_factory=dict)

    def get(self, name: Hashable, key: bytes, make: Callable[[], T]) -> tuple[T, bool]:
        """The value for ``name`` at spec ``key``; ``True`` when an older one was retired."""
        version = self._current.get(name)
        if version is not None and version.key == key:
            return version.value, False
        # An older run may resume with a spec made before the current one: its
        # version is found among the retired ones still in use.
        for old in self._retired:
            if old.key == key:
                return old.value, False
        replaced = version is not None
        if version is not None:
            version.retired = True
            self._retired.append(version)
        made = _Version(key, make())
        self._current[name] = made
        self._by_id[id(made.value)] = made
        return made.value, replaced

    def acquire(self, values: Iterable[T]) -> None:
        """Mark ``values`` as used by one more execution."""
        for value in values:
            version = self._by_id.get(id(value))
            if version is not None:
                version.users += 1

    async def release(self, values: Iterable[T]) -> None:
        """One execution is done with ``values``; close the retired ones left unused."""
        for value in values:
            version = self._by_id.get(id(value))
            if version is not None:
                version.users -= 1
        await self.close_unused()

    async def close_unused(self) -> None:
        """Close every retired value that no execution uses."""
        unused = [v for v in self._retired if v.users <= 0]
        self._retired = [v for v in self._retired if v.users > 0]
        for version in unused:
            self._by_id.pop(id(version.value), None)
            await self._close(version.value)

    async def close(self) -> None:
        """Close every value, current and retired."""
        versions = [*self._current.values(), *self._retired]
        self._current.clear()
        self._retired.clear()
        self._by_id.clear()
        for version in versions:
            await self._close(version.value)

    async def _close(self, value: T) -> None:
        with contextlib.suppress(Exception):
            await self.close_value(value)
