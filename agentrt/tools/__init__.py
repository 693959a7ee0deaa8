"""Tool kinds, the context a tool call receives, and its result."""

from agentrt.tools.base import ToolContext, ToolResult, ToolSet, Withholding
from agentrt.tools.factory import TOOL_KINDS, ToolFactory, build_toolset
from agentrt.tools.keys import StepKey
from agentrt.tools.python import PythonTool, schema_from_signature

__all__ = [
    "TOOL_KINDS",
    "PythonTool",
    "StepKey",
    "ToolContext",
    "ToolFactory",
    "ToolResult",
    "ToolSet",
    "Withholding",
    "build_toolset",
    "schema_from_signature",
]
