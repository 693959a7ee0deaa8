"""Server-sent events read from a byte stream, as the format defines them.

A line ``field: value`` adds to the event being read, a blank line ends it,
a line starting with ``:`` is a comment (a keep-alive). Only ``id``,
``event`` and ``data`` matter to agentrt's streams.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass

__all__ = ["SseMessage", "read_sse"]


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One event of a stream: its ``event`` type, ``data`` text and ``id`` (if any)."""

    event: str
    data: str
    id: str | None = None


async def read_sse(chunks: AsyncIterable[bytes]) -> AsyncGenerator[SseMessage, None]:
    """The events in ``chunks`` (pieces of a ``text/event-stream`` body) until it ends.

    An event cut off by the end of the body is not yielded: a client resuming
    asks for it again by the last ``id`` it saw.
    """
    buffer = b""
    fields: dict[str, list[str]] = {}
    async for chunk in chunks:
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line = buffer[:end].rstrip(b"\r").decode("utf-8", errors="replace")
            buffer = buffer[end + 1 :]
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value.removeprefix(" "))
                continue
            if fields:
                ids = fields.get("id")
                yield SseMessage(
                    fields.get("event", ["message"])[-1],
                    "\n".join(fields.get("data", [])),
                    ids[-1] if ids else None,
                )
                fields = {}
