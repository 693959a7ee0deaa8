"""agentrt: an Agentic Runtime that runs AI agents as durable, governable workloads.

Quick use::

    from agentrt import Runtime

    async with Runtime() as rt:
        await rt.apply("examples/hello")
        result = await rt.run("assistant", "What is 6 * 7?")
"""

from agentrt.engine import HookSet, RunResult, Runtime
from agentrt.errors import AgentrtError, RunError, SpecError, UsageError
from agentrt.tools import ToolContext, ToolResult

__version__ = "0.1.0"

__all__ = [
    "AgentrtError",
    "HookSet",
    "RunError",
    "RunResult",
    "Runtime",
    "SpecError",
    "ToolContext",
    "ToolResult",
    "UsageError",
    "__version__",
]
