"""Build the tool set of a Tool resource, by kind."""

from __future__ import annotations

from agentrt._imports import import_callable
from agentrt.errors import UsageError
from agentrt.spec.resources import ToolSpec
from agentrt.tools.base import ToolSet

__all__ = ["TOOL_KINDS", "build_toolset"]

# Imported only when a Tool of that kind is used: each may need an extra.
TOOL_KINDS: dict[str, str] = {
    "python": "agentrt.tools.python:PythonTool",
    "http": "agentrt.tools.http:HttpToolSet",
    "mcp": "agentrt.tools.mcp:McpToolSet",
    "code": "agentrt.tools.code:CodeTool",
}


def build_toolset(name: str, spec: ToolSpec) -> ToolSet:
    """The tool set for Tool ``name``. Kind ``agent`` is built by the engine (it needs it)."""
    ref = TOOL_KINDS.get(spec.kind)
    if ref is None:
        raise UsageError(f"Tool {name}: kind {spec.kind!r} is built by the engine, not here")
    cls = import_callable(ref, what=f"tool kind {spec.kind!r}")
    toolset: ToolSet = cls(name, spec)
    return toolset
