"""A test MCP server over stdio, written with the SDK's low-level ``Server``.

Low-level on purpose: it announces ``tools.listChanged`` on both protocol eras
(a ``subscriptions/listen`` handler for 2026-07-28 clients, the
``NotificationOptions`` flag for handshake-era ones), so the client's cached
tool list is exercised the way a real dynamic server drives it.

Tools: ``add``, ``echo``, ``pid`` (this process), ``meta`` (the request's
``_meta``), ``stats`` (how many ``tools/list`` requests were served),
``enable_extra`` (registers ``multiply`` and announces the change), ``fail``
(an ``isError`` result), ``picture`` (text plus an image) and ``crash`` (the
process exits mid-call).

Run: ``python calc_stdio.py [--quiet]``. ``--quiet`` announces no ``listChanged``
(a server that never says when its tools change). When ``CALC_STARTS`` is set
(through the Tool's ``mcp.env``), each start appends the process id to that file.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from typing import Any

import anyio
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.shared.subscriptions import ToolsListChanged
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ImageContent,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)

# 1x1 transparent PNG: a real non-text content block for the summary test.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()

INT_PAIR = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}

TOOLS = [
    Tool(name="add", description="Add two integers.", input_schema=INT_PAIR),
    Tool(
        name="echo",
        description="Echo the text back.",
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    ),
    Tool(name="pid", description="The server's process id.", input_schema=NO_ARGS),
    Tool(name="meta", description="The request's _meta, as JSON.", input_schema=NO_ARGS),
    Tool(
        name="stats", description="How many tools/list requests were served.", input_schema=NO_ARGS
    ),
    Tool(name="enable_extra", description="Register the multiply tool.", input_schema=NO_ARGS),
    Tool(
        name="fail",
        description="Answer with an isError result.",
        input_schema={"type": "object", "properties": {"message": {"type": "string"}}},
    ),
    Tool(name="picture", description="Text and a PNG image.", input_schema=NO_ARGS),
    Tool(name="crash", description="Exit the server process mid-call.", input_schema=NO_ARGS),
]
MULTIPLY = Tool(name="multiply", description="Multiply two integers.", input_schema=INT_PAIR)

bus = InMemorySubscriptionBus()
state: dict[str, Any] = {"tools": list(TOOLS), "lists": 0}


def text(value: object) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=str(value))])


async def list_tools(
    ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
) -> ListToolsResult:
    state["lists"] += 1
    return ListToolsResult(tools=state["tools"])


async def call_tool(
    ctx: ServerRequestContext[Any], params: CallToolRequestParams
) -> CallToolResult:
    args = params.arguments or {}
    if params.name not in [t.name for t in state["tools"]]:
        return CallToolResult(content=[TextContent(text=f"no tool {params.name!r}")], is_error=True)
    match params.name:
        case "add":
            return text(int(args["a"]) + int(args["b"]))
        case "multiply":
            return text(int(args["a"]) * int(args["b"]))
        case "echo":
            return text(args["text"])
        case "pid":
            return text(os.getpid())
        case "meta":
            return text(json.dumps(dict(ctx.meta or {}), sort_keys=True))
        case "stats":
            return text(state["lists"])
        case "enable_extra":
            if MULTIPLY not in state["tools"]:
                state["tools"].append(MULTIPLY)
            # Both eras: listen streams (2026-07-28) and the session channel (earlier).
            await bus.publish(ToolsListChanged())
            await ctx.session.send_tool_list_changed()
            return text("multiply enabled")
        case "fail":
            message = str(args.get("message", "it failed"))
            return CallToolResult(content=[TextContent(text=message)], is_error=True)
        case "picture":
            return CallToolResult(
                content=[
                    TextContent(text="a picture"),
                    ImageContent(data=PNG, mime_type="image/png"),
                ]
            )
        case _:  # crash
            os._exit(3)


QUIET = "--quiet" in sys.argv
server: Server[Any] = Server(
    "calc-stdio",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
    on_subscriptions_listen=None if QUIET else ListenHandler(bus),
)


async def main() -> None:
    if starts := os.environ.get("CALC_STARTS"):
        with open(starts, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    options = server.create_initialization_options(NotificationOptions(tools_changed=not QUIET))
    async with stdio_server() as (read, write):
        await server.run(read, write, options)


if __name__ == "__main__":
    anyio.run(main)
