"""A test MCP server over stdio whose tools have names and needs models reject.

Written with the SDK's low-level ``Server`` so that every name and ``execution``
field reaches the client exactly as listed here. Tools:

- names an OpenAI-compatible API refuses: ``files.read``, ``ns/echo``,
  ``read file``, and two names over 64 characters that share their first 64;
- ``files_read``, the name ``files.read`` becomes when its dot is replaced;
- ``add``, a name the ``calc`` servers offer too;
- ``long_job``, whose ``execution.taskSupport`` is ``required`` (it must be
  called as an MCP task), and ``quick_job`` where tasks are ``optional``.

Every call answers with JSON ``{"tool": name, "args": arguments}``: the name the
server was called by. ``ODD_HIDE`` (through the Tool's ``mcp.env``) names a
tool the server does not list. ``long_job`` called without a task is refused with
``-32601``, as the MCP specification (2025-11-25) tells servers to.

Run: ``python odd_stdio.py``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
    ToolExecution,
)

LONG = "summarise_the_quarterly_report_of_every_department_in_the_company_"
ANY_ARGS: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string"}}}
NAMES = ["files.read", "files_read", "ns/echo", "read file", LONG + "now", LONG + "later", "add"]

TOOLS = [Tool(name=n, description=f"The {n} tool.", input_schema=ANY_ARGS) for n in NAMES] + [
    Tool(
        name="long_job",
        description="Must run as an MCP task.",
        input_schema=ANY_ARGS,
        execution=ToolExecution(task_support="required"),
    ),
    Tool(
        name="quick_job",
        description="May run as an MCP task.",
        input_schema=ANY_ARGS,
        execution=ToolExecution(task_support="optional"),
    ),
]


async def list_tools(
    ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
) -> ListToolsResult:
    hidden = os.environ.get("ODD_HIDE", "")
    return ListToolsResult(tools=[t for t in TOOLS if t.name != hidden])


async def call_tool(
    ctx: ServerRequestContext[Any], params: CallToolRequestParams
) -> CallToolResult:
    if params.name not in [t.name for t in TOOLS]:
        return CallToolResult(content=[TextContent(text=f"no tool {params.name!r}")], is_error=True)
    if params.name == "long_job" and params.task is None:
        raise MCPError(-32601, "long_job must be called as a task (taskSupport: required)")
    answer = json.dumps({"tool": params.name, "args": params.arguments or {}}, sort_keys=True)
    return CallToolResult(content=[TextContent(text=answer)])


server: Server[Any] = Server("odd-stdio", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
