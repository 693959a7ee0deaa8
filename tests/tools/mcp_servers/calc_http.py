"""A test MCP server over streamable HTTP, written with the SDK's ``MCPServer``.

Tools: ``add``, ``echo``, ``pid`` (this process), and ``enable_extra``, which
registers ``multiply`` and announces the change to every client listening for
it, so a test can change the tools under a runtime from a second client.

Run: ``python calc_http.py PORT``; it serves ``http://127.0.0.1:PORT/mcp``.
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("calc-http", log_level="WARNING")


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
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
