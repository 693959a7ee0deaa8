"""A test MCP server over streamable HTTP, written with the SDK's ``MCPServer``.

Tools: ``add``, ``echo``, ``pid`` (this process), and ``enable_extra``, which
registers ``multiply`` and announces the change to every client listening for
it, so a test can change the tools under a runtime from a second client.

Every HTTP request the server receives is recorded (method, path, and the
``Mcp-Session-Id`` header) and served as JSON at ``GET /requests``, so a test
can see what a client sent, e.g. the ``DELETE`` that ends a session.

Run: ``python calc_http.py PORT``; it serves ``http://127.0.0.1:PORT/mcp``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

server = MCPServer("calc-http", log_level="WARNING")
received: list[dict[str, Any]] = []


@server.custom_route("/requests", methods=["GET"])
async def requests(request: Request) -> Response:
    """What the server has received so far (this request excluded)."""
    return JSONResponse(received)


def recording(app: Any) -> Any:
    """The ASGI app, recording each HTTP request before it is handled."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] != "/requests":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            received.append(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "session": headers.get("mcp-session-id"),
                }
            )
        await app(scope, receive, send)

    return wrapped


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@server.tool()
async def enable_extra(ctx: Context) -> str:
    """Register the multiply tool."""
    if "multiply" not in [tool.name for tool in await server.list_tools()]:
        server.add_tool(multiply)
    await ctx.notify_tools_changed()
    return "multiply enabled"


if __name__ == "__main__":
    app = recording(server.streamable_http_app())
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
