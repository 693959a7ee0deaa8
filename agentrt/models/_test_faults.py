"""What :class:`~agentrt.models.testserver.ModelTestServer` injects and how it answers
errors: pending faults, delays and changed replies, and OpenAI's error shapes."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agentrt._json import dumps

__all__ = ["JSON", "Delay", "Fault", "Reply", "error", "invalid_tool", "seconds_text", "take"]

JSON = "application/json"
# What OpenAI's Chat Completions API accepts as a tool name; it answers 400 otherwise.
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(slots=True)
class Fault:
    """Answer the next ``remaining`` requests with ``status`` (and ``body``)."""

    status: int
    remaining: int
    retry_after: float | None
    body: str | None


@dataclass(slots=True)
class Delay:
    """Delay the next ``remaining`` responses by ``seconds``."""

    seconds: float
    remaining: int


@dataclass(slots=True)
class Reply:
    """Change the next ``remaining`` scripted replies."""

    remaining: int
    finish_reason: str | None
    usage: dict[str, Any] | None
    cut_after: int | None = None


def invalid_tool(tools: Any) -> str | None:
    """Why OpenAI would refuse this ``tools`` list (a name it does not accept), if it would."""
    for index, tool in enumerate(tools or ()):
        name = tool.get("function", {}).get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            return (
                f"Invalid 'tools[{index}].function.name': {name!r} does not match "
                f"pattern '{_TOOL_NAME.pattern}'"
            )
    return None


def take(queue: deque[Any]) -> Any:
    """Use one of the head entry's remaining count; return the entry or ``None``."""
    if not queue:
        return None
    head = queue[0]
    head.remaining -= 1
    if head.remaining <= 0:
        queue.popleft()
    return head


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error response in OpenAI's shape."""
    kind = (
        "rate_limit_error"
        if status == 429
        else "server_error"
        if status >= 500
        else "invalid_request_error"
    )
    payload = {"error": {"message": message, "type": kind, "code": status}}
    return web.Response(status=status, body=dumps(payload), content_type=JSON, headers=headers)


def seconds_text(seconds: float) -> str:
    """Seconds as a ``Retry-After`` header says them."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
