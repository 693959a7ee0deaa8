"""A TCP relay in front of ``agentrt serve`` that cuts its first connection partway:
how a client's stream is seen to drop (a proxy restarting, a network failing)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Cutter:
    """Relays 127.0.0.1:``port`` to ``target``; the first connection's answer is cut
    just after ``marker`` has gone through (plus ``extra`` bytes), mid-event."""

    target: str  # http://127.0.0.1:PORT
    marker: bytes
    extra: int = 5
    requests: list[bytes] = field(default_factory=list)  # each connection's first bytes
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> Cutter:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"http://127.0.0.1:{self.port}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(self.requests)
        self.requests.append(b"")
        where = urlsplit(self.target)
        up_reader, up_writer = await asyncio.open_connection(where.hostname, where.port)

        async def upstream() -> None:
            while data := await reader.read(65536):
                if len(self.requests[number]) < 4096:
                    self.requests[number] += data
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            seen = b""
            while data := await up_reader.read(65536):
                if number == 0:
                    seen += data
                    at = seen.find(self.marker)
                    if at >= 0:
                        writer.write(data[: len(data) - (len(seen) - at - len(self.marker))])
                        writer.write(seen[at + len(self.marker) :][: self.extra])
                        await writer.drain()
                        return  # cut: both sides are closed below
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()
