"""agentrt: an Agentic Runtime that runs AI agents as durable, governable workloads.

Quick use::

    from agentrt import Runtime

    async with Runtime() as rt:
        await rt.apply("examples/hello")
        result = await rt.run("greeter", "Say hi to Ada")

A hook or a Python tool raises :class:`ToolError` to fail a call: the model
sees the message as the tool's result, and the run goes on.
"""

from agentrt._version import __version__
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
