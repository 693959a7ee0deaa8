"""What each method group of the SQLite store (a mixin of
:class:`~agentrt.state.sqlite.SqliteStore`) uses of the store itself: its writer's
``_submit`` and ``_write``, declared once here for the type checker (the store
defines them; each group declares the part of the store's SQL it uses)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["SqlitePart"]

T = TypeVar("T")


class SqlitePart:
    """The base of the SQLite store's method groups."""

    if TYPE_CHECKING:

        def _submit(self, kind: int, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]: ...

        async def _write(
            self, touched: Callable[[T], Iterable[str]], fn: Callable[..., T], *args: Any
        ) -> T: ...
