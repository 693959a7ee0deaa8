"""How the PostgreSQL store runs an operation on a connection of its pool.

A read is one statement on a borrowed connection, outside a transaction. A write
is one transaction that also notifies the watchers of the runs it touched
(:mod:`agentrt.state._pg_watch`), and once committed this store's own watches.
A write once started runs to its end even if its caller is cancelled (it is a
task of its own), so whether it committed is never left to chance, and closing
the store waits for it.

What runs again, and why it is safe: a transaction PostgreSQL rolled back whole
(a deadlock, a serialization failure); a write whose pooled connection was dead
before its transaction began; a read (it changes nothing) on a connection that
was lost. After a lost connection the pool tests its idle ones, so a server
restart costs one failed attempt, not one per pooled connection.

Lease renewals go over a connection of their own, made like the pool's: a worker
whose every pooled connection is busy (a crowd of steps queued on one tenant's
account rows, a slow query) still renews its leases in time, so a live worker's
runs are never taken over for want of a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Final, TypeVar

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from agentrt.errors import StoreUnavailable, UsageError
from agentrt.state._pg_errors import TRANSIENT, connection_lost, store_error
from agentrt.state._pg_rows import Conn
from agentrt.state._pg_watch import Listener, channel_of, new_nonce, notify
from agentrt.state.watch import ChangeHub

__all__ = ["Runner"]

T = TypeVar("T")

_ATTEMPTS: Final = 3


class Runner:
    """A store's pool, the operations under way on it, and its watches' hub."""

    def __init__(self, pool: AsyncConnectionPool[Any], name: str, *, read_only: bool) -> None:
        """Run operations on ``pool`` for the store shown as ``name``."""
        self.pool = pool
        self.name = name
        self.read_only = read_only
        self.closed = True
        self.nonce = new_nonce()  # this store's signature on its notifications
        self.channel = ""
        self.hub = ChangeHub()
        self._writes: set[asyncio.Task[Any]] = set()
        self._renewals: AsyncConnectionPool[Any] | None = None

    def start(self, schema: str) -> None:
        """Begin serving the store in ``schema``; its watches listen on its channel."""
        self.channel = channel_of(schema)
        self.hub = ChangeHub(Listener(self._listen_connection, self.channel, self.nonce))
        self.closed = False

    async def close(self, *, close_pool: bool) -> None:
        """Let writes under way finish, stop listening, and close the pool if asked."""
        if self.closed:
            return
        self.closed = True
        while self._writes:
            await asyncio.wait(set(self._writes))
        await self.hub.close()
        if self._renewals is not None:
            await self._renewals.close()
        if close_pool:
            await self.pool.close()

    def error(self, exc: psycopg.Error, *, connecting: bool = False) -> Exception:
        """``exc`` as the store error it means, or itself (a bug to show as it is)."""
        if isinstance(exc, psycopg.DataError) and "NUL" in str(exc):
            # The caller's text, not the store, is at fault (PostgreSQL's text has no NUL).
            return UsageError(
                "a name or text holds a NUL character (\\x00), which PostgreSQL cannot "
                "store; remove it"
            )
        return store_error(exc, self.name, connecting=connecting) or exc

    def check_open(self) -> None:
        """Refuse work once the store is closed."""
        if self.closed:
            raise UsageError("the store is closed")

    async def read(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(conn, *args)`` on a borrowed connection: one statement, no transaction."""
        self.check_open()
        for attempt in range(2):
            try:
                async with self.pool.connection() as conn:
                    return await fn(conn, *args)
            except psycopg.Error as exc:
                if attempt == 0 and connection_lost(exc):
                    await self._drop_broken()
                    continue
                raise self.error(exc) from exc
        raise AssertionError("unreachable")

    async def write(
        self,
        touched: Callable[[T], Collection[str]],
        fn: Callable[..., Awaitable[T]],
        *args: Any,
    ) -> T:
        """``fn(conn, *args)`` in one transaction; the runs ``touched(result)`` names
        are notified in it and, once committed, published to this store's watches."""
        self.check_open()
        if self.read_only:
            raise StoreUnavailable(
                self.name, "was opened read-only", "open it without read_only to change it"
            )
        return await self._shielded(self._transaction(touched, fn, args, self.pool))

    async def renewal(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(conn, *args)`` in one transaction on the lease renewals' own connection
        (no watch hears of it): it never waits behind the pool's other work."""
        self.check_open()
        if self.read_only:
            raise StoreUnavailable(
                self.name, "was opened read-only", "open it without read_only to change it"
            )
        return await self._shielded(self._transaction(_no_runs, fn, args, await self._lease_pool()))

    async def _lease_pool(self) -> AsyncConnectionPool[Any]:
        """The renewals' pool of one connection, made on first use."""
        if self._renewals is None:
            conninfo, kwargs = await _value(self.pool.conninfo), await _value(self.pool.kwargs)
            if self._renewals is None:  # the first caller that got here makes it
                self._renewals = AsyncConnectionPool(
                    conninfo, kwargs=kwargs or {}, min_size=1, max_size=1, open=False,
                    name="agentrt-leases",
                )  # fmt: skip
                await self._renewals.open(wait=False)
        return self._renewals

    async def _shielded(self, transaction: Awaitable[T]) -> T:
        task = asyncio.ensure_future(transaction)
        self._writes.add(task)
        task.add_done_callback(self._written)
        return await asyncio.shield(task)

    async def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One statement's rows (none for a statement that returns none)."""
        return await self.read(_rows, sql, params)

    def _written(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller cancelled meanwhile no longer waits

    async def _transaction(
        self,
        touched: Callable[[T], Collection[str]],
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        pool: AsyncConnectionPool[Any],
    ) -> T:
        for attempt in range(_ATTEMPTS):
            began = False
            try:
                async with pool.connection() as conn, conn.transaction():
                    began = True
                    result = await fn(conn, *args)
                    run_ids = touched(result)
                    if run_ids:
                        await notify(conn, self.channel, self.nonce, run_ids)
            except psycopg.Error as exc:
                lost = not began and connection_lost(exc)
                if (lost or exc.sqlstate in TRANSIENT) and attempt < _ATTEMPTS - 1:
                    if lost:
                        await self._drop_broken(pool)
                    continue
                raise self.error(exc) from exc
            if run_ids:
                self.hub.publish(run_ids)
            return result
        raise AssertionError("unreachable")

    async def _drop_broken(self, pool: AsyncConnectionPool[Any] | None = None) -> None:
        """Have the pool test its idle connections and replace the dead ones."""
        with contextlib.suppress(psycopg.Error):
            await (pool or self.pool).check()

    async def _listen_connection(self) -> psycopg.AsyncConnection[Any]:
        """A connection of its own, made like the pool's, for ``LISTEN``."""
        conninfo = await _value(self.pool.conninfo)
        kwargs = await _value(self.pool.kwargs) or {}
        return await psycopg.AsyncConnection.connect(conninfo, **{**kwargs, "autocommit": True})


def _no_runs(_: object) -> Collection[str]:
    return ()


async def _rows(conn: Conn, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(sql, params)
    return await cur.fetchall() if cur.description is not None else []


async def _value(param: Any) -> Any:
    """A pool's ``conninfo`` or ``kwargs``: given as is, or by a function (maybe async)."""
    if callable(param):
        param = param()
        if inspect.isawaitable(param):
            param = await param
    return param
