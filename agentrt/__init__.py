"""agentrt: an Agentic Runtime that runs AI agents as durable, governable workloads.

Quick use::

    from agentrt import Runtime

    async with Runtime() as rt:
        await rt.apply("examples/hello")
        result = await rt.run("greeter", "Say hi to Ada")

A hook or a Python tool raises :class:`ToolError` to fail a call: the model
sees the message as the tool's result, and the run goes on.

The names below load on first use (PEP 562), so that ``import agentrt.spec``
(resource types and validation) needs none of what the engine runs on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentrt._version import __version__

if TYPE_CHECKING:
    from agentrt.engine import HookSet, RunResult, Runtime
    from agentrt.errors import (
        AgentrtError,
        NondeterminismError,
        RunError,
        SpecError,
        ToolError,
        UsageError,
    )
    from agentrt.tools import ToolContext, ToolResult

__all__ = [
    "AgentrtError",
    "HookSet",
    "NondeterminismError",
    "RunError",
    "RunResult",
    "Runtime",
    "SpecError",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "UsageError",
    "__version__",
]

# Where each public name is defined; imported when first asked for.
_HOMES: dict[str, str] = {
    "HookSet": "agentrt.engine",
    "RunResult": "agentrt.engine",
    "Runtime": "agentrt.engine",
    "AgentrtError": "agentrt.errors",
    "NondeterminismError": "agentrt.errors",
    "RunError": "agentrt.errors",
    "SpecError": "agentrt.errors",
    "ToolError": "agentrt.errors",
    "UsageError": "agentrt.errors",
    "ToolContext": "agentrt.tools",
    "ToolResult": "agentrt.tools",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
