"""Tool kinds, the context a tool receives, and its result."""

from agentrt.tools.base import RuntimeTool, ToolContext, ToolResult
from agentrt.tools.python import PythonTool, build_tool, schema_from_signature

__all__ = [
    "PythonTool",
    "RuntimeTool",
    "ToolContext",
    "ToolResult",
    "build_tool",
    "schema_from_signature",
]
