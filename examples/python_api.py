"""Use agentrt from Python: apply resources, run, hook in, inspect the log.

python examples/python_api.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # so `examples.*` tools import

from agentrt import Runtime


async def main() -> None:
    """Run the hello example's agent on a throwaway store and print what happened."""
    with tempfile.TemporaryDirectory() as tmp:
        async with Runtime(store=Path(tmp) / "agentrt.db") as rt:
            await rt.apply(Path(__file__).with_name("hello"))
            rt.add_hook("on_step", lambda ctx, step: print(f"  step {step.step}: {step.phase}"))
            run = await rt.submit("greeter", "Say hi to Ada")
            result = await rt.wait(run.id)
            print(result.status, "-", result.output)
            print("tokens:", result.usage.total_tokens, "tool calls:", result.usage.tool_calls)
            again = await rt.replay(run.id)  # from the log alone: no model or tool calls
            assert again.output == result.output


if __name__ == "__main__":
    asyncio.run(main())
