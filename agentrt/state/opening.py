"""How a store is opened and closed: ``await`` an :class:`Opening` for the open store,
or ``async with`` it to have the store closed on exit; a backend's class inherits
:class:`ClosesOnExit` so that ``async with await X.open(...)`` closes it too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

__all__ = ["ClosesOnExit", "Opening"]


class _Closable(Protocol):
    async def close(self) -> None: ...


S_co = TypeVar("S_co", bound=_Closable, covariant=True)


class Opening(Generic[S_co]):
    """A store being opened: ``await`` it for the open store, or ``async with`` it to
    have the store closed on exit."""

    def __init__(self, open_: Callable[[], Awaitable[S_co]]) -> None:
        """Wrap ``open_``, the coroutine function that opens the store (called once)."""
        self._open = open_
        self._store: _Closable | None = None

    def __await__(self) -> Generator[Any, None, S_co]:
        return self._open().__await__()

    async def __aenter__(self) -> S_co:
        store = await self._open()
        self._store = store
        return store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()


class ClosesOnExit:
    """What a backend's class inherits so that ``async with await X.open(...)`` closes
    the store on exit."""

    async def close(self) -> None:
        """Release what the store holds (each backend says what)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
