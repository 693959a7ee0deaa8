"""Build the tool set of a Tool resource, by kind, with what the Runtime gives its tools."""

from __future__ import annotations

from typing import Any

from agentrt._imports import import_callable
from agentrt.errors import UsageError
from agentrt.settings import Settings
from agentrt.spec.resources import ToolSpec
from agentrt.tools.base import ToolSet
from agentrt.tools.sandbox.sandboxes import Sandboxes

__all__ = ["TOOL_KINDS", "ToolFactory", "build_toolset"]

# Imported only when a Tool of that kind is used: each may need an extra.
TOOL_KINDS: dict[str, str] = {
    "python": "agentrt.tools.python:PythonTool",
    "http": "agentrt.tools.http:HttpToolSet",
    "mcp": "agentrt.tools.mcp:McpToolSet",
    "a2a": "agentrt.tools.a2a:A2aToolSet",
    "code": "agentrt.tools.code:CodeTool",
}


class ToolFactory:
    """Builds the tool sets of one Runtime, handing each kind what it needs.

    HTTP, MCP and A2A tools get the settings' environment (secrets, proxies,
    ``${env:NAME}`` references); code tools get it too (``permissions.env``)
    and the Runtime's :class:`~agentrt.tools.sandbox.sandboxes.Sandboxes`,
    which they share. Close it with the Runtime, after the tool sets.

    Args:
        settings: The Runtime's settings (by default: no environment, the
            default sandbox directory).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self.sandboxes = Sandboxes(self.settings.sandbox_dir)

    def build(self, name: str, spec: ToolSpec) -> ToolSet:
        """The tool set for Tool ``name``. Kind ``agent`` is built by the engine (it needs it)."""
        return build_toolset(name, spec, settings=self.settings, sandboxes=self.sandboxes)

    def remove_old_artifacts(self, cutoff: float) -> int:
        """Delete sandboxed calls' output artifacts written before ``cutoff`` (blocking)."""
        return self.sandboxes.remove_old_artifacts(cutoff)

    async def close(self) -> None:
        """Close what the tool sets shared (their sandboxes' service)."""
        await self.sandboxes.close()


def build_toolset(
    name: str,
    spec: ToolSpec,
    *,
    settings: Settings | None = None,
    sandboxes: Sandboxes | None = None,
) -> ToolSet:
    """The tool set for Tool ``name``, standing alone unless given a Runtime's parts.

    Args:
        name: The Tool resource's name.
        spec: Its spec.
        settings: Where environment references are looked up (by default none is set).
        sandboxes: The sandboxes a code tool shares (by default it has its own).
    """
    ref = TOOL_KINDS.get(spec.kind)
    if ref is None:
        raise UsageError(f"Tool {name}: kind {spec.kind!r} is built by the engine, not here")
    cls = import_callable(ref, what=f"tool kind {spec.kind!r}")
    toolset: ToolSet = cls(name, spec, **_parts_for(spec.kind, settings, sandboxes))
    return toolset


def _parts_for(kind: str, settings: Settings | None, sandboxes: Sandboxes | None) -> dict[str, Any]:
    """The keyword arguments a kind's constructor takes of the Runtime's parts."""
    environ = settings.environ if settings is not None else None
    if kind in ("http", "mcp", "a2a"):
        return {"environ": environ}
    if kind == "code":
        return {"environ": environ, "sandboxes": sandboxes}
    return {}
