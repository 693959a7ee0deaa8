"""How PostgreSQL stores in different processes tell each other that they wrote runs:
``LISTEN``/``NOTIFY``.

Each transaction that writes runs sends, before it commits, one notification on
the store's channel (``agentrt_<schema>``) naming the runs and the store that
wrote them; PostgreSQL delivers it on commit, and not at all on a rollback. A
watch of any store of the schema, in any process, hears it on a connection of
its own that only listens, so waiting reads nothing. A store ignores its own
notifications (its watches heard of the write at once). A notification too
large for PostgreSQL's 8000-byte limit names no runs: every run a watch waits
on counts as written.

When the listening connection is lost (a database restart, a network cut), the
listener reconnects with backoff and then reports every run as written, since
notifications sent meanwhile were lost; while connected it sends a ping after
each quiet interval, so a silently dead connection is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Final

from psycopg import AsyncConnection, sql

from agentrt._json import dumps_str, loads
from agentrt.state._pg_rows import Conn, execute

__all__ = ["Listener", "channel_of", "notify", "payload_of"]

log = logging.getLogger(__name__)

_MAX_PAYLOAD: Final = 7900  # PostgreSQL's limit is 8000 bytes
_PING_S: Final = 30.0
_BACKOFF_S: Final = (0.1, 0.5, 1.0, 2.0, 5.0)


def channel_of(schema: str) -> str:
    """The notification channel of the store in ``schema`` (at most 63 bytes)."""
    channel = f"agentrt_{schema}"
    if len(channel.encode()) > 63:
        channel = "agentrt_" + hashlib.sha256(schema.encode()).hexdigest()[:32]
    return channel


def payload_of(nonce: str, run_ids: Collection[str]) -> str:
    """What a notification says: who wrote, and which runs (``None``: too many to say)."""
    payload = dumps_str([nonce, list(run_ids)])
    if len(payload.encode()) > _MAX_PAYLOAD:
        payload = dumps_str([nonce, None])
    return payload


async def notify(conn: Conn, channel: str, nonce: str, run_ids: Collection[str]) -> None:
    """Queue the notification of a write to ``run_ids`` in ``conn``'s transaction."""
    await execute(conn, "SELECT pg_notify(%s, %s)", (channel, payload_of(nonce, run_ids)))


def new_nonce() -> str:
    """A store's name in its notifications, unique among the stores of a schema."""
    return secrets.token_hex(8)


class Listener:
    """Calls back when another store of the schema wrote runs (the
    :class:`~agentrt.state.watch.ForeignWrites` of a PostgreSQL store)."""

    def __init__(
        self, connect: Callable[[], Awaitable[AsyncConnection[Any]]], channel: str, nonce: str
    ) -> None:
        """Listen on ``channel`` over connections ``connect`` makes (autocommit), ignoring
        the notifications signed ``nonce``."""
        self.channel = channel
        self.nonce = nonce
        self.reconnects = 0  # how often the connection was lost and made again (tests)
        self._connect = connect
        self._conn: AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_write: Callable[[Collection[str] | None], None] | None = None

    async def start(self, on_write: Callable[[Collection[str] | None], None]) -> None:
        """Listen (before returning: a write committed after this is heard), then call
        ``on_write`` with the runs of each foreign write, or ``None`` when unknown."""
        self._on_write = on_write
        self._conn = await self._listen()
        self._task = asyncio.create_task(self._receive(), name="agentrt-pg-listen")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _listen(self) -> AsyncConnection[Any]:
        conn = await self._connect()
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _receive(self) -> None:
        while True:
            conn = self._conn
            assert conn is not None
            try:
                while True:
                    async for note in conn.notifies(timeout=_PING_S):
                        self._heard(note.payload)
                    await conn.execute("SELECT 1")  # quiet for a while: still there?
            except Exception as exc:  # lost, or unusable: a new connection either way
                log.warning("lost the store's notification connection (%s); reconnecting", exc)
            with contextlib.suppress(Exception):
                await conn.close()
            self._conn = await self._reconnect()
            self.reconnects += 1
            self._fire(None)  # what was sent while away is lost: everything may have changed

    async def _reconnect(self) -> AsyncConnection[Any]:
        attempt = 0
        while True:
            await asyncio.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
            attempt += 1
            try:
                return await self._listen()
            except Exception as exc:
                log.info("cannot listen for the store's notifications yet (%s)", exc)

    def _heard(self, payload: str) -> None:
        try:
            nonce, run_ids = loads(payload)
        except (ValueError, TypeError):
            self._fire(None)  # not ours to read: treat as a write of anything
            return
        if nonce != self.nonce:
            self._fire(None if run_ids is None else frozenset(run_ids))

    def _fire(self, run_ids: Collection[str] | None) -> None:
        if self._on_write is not None:
            self._on_write(run_ids)
