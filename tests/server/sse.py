"""A reader of server-sent events for the stream tests, written from the format's
definition (not the server's code): fields per line, an event per blank line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agentrt import _json


@dataclass
class Sse:
    """One event as a client sees it; ``comments`` are the lines starting with ``:``
    read since the event before (keep-alives)."""

    event: str
    data: Any
    id: str | None = None
    comments: list[str] = field(default_factory=list)


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[Sse]:
    """The events of a ``text/event-stream`` response until it ends; a comment read
    after the last event comes as an event of type ``""`` with no data."""
    fields: dict[str, list[str]] = {}
    comments: list[str] = []
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode().rstrip("\r")
            if line.startswith(":"):
                comments.append(line[1:].strip())
                continue
            if line:
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value.removeprefix(" "))
                continue
            if not fields:
                if comments:
                    yield Sse("", None, comments=comments)
                    comments = []
                continue
            data = "\n".join(fields.get("data", []))
            ids = fields.get("id")
            yield Sse(
                fields.get("event", ["message"])[-1],
                _json.loads(data) if data else None,
                ids[-1] if ids else None,
                comments,
            )
            fields, comments = {}, []


def durable(seen: list[Sse]) -> list[Sse]:
    """The events of the log among ``seen`` (those with an id)."""
    return [e for e in seen if e.id is not None]


def deltas(seen: list[Sse]) -> list[Sse]:
    """The live pieces of model replies among ``seen``."""
    return [e for e in seen if e.event == "model.delta"]
