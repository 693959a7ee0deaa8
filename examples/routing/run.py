"""Model routing from Python: register the classifier hook `triage` names, run each
agent of the example, and print which Model each step asked and why.

python examples/routing/run.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from agentrt import Runtime
from agentrt.engine import RouteQuery
from agentrt.engine import events as ev


def difficulty(query: RouteQuery) -> str:
    """A classifier hook: the label the rules of `triage` route by (any code of the
    embedding program: a heuristic, a small model, a lookup)."""
    return "hard" if "refund" in query.input or "vip" in query.tags else "easy"


async def main() -> None:
    """Run the example's agents on a throwaway store and print each step's route."""
    with tempfile.TemporaryDirectory() as tmp:
        async with Runtime(store=Path(tmp) / "agentrt.db") as rt:
            rt.register_hook("difficulty", difficulty)  # the spec names it, never imports it
            await rt.apply(Path(__file__).parent)
            queries = [
                ("concierge", "Where is my parcel?", []),
                ("concierge", "Where is my parcel?", ["vip"]),
                ("triage", "Where is my parcel?", []),
                ("triage", "I want a refund for my parcel", []),
                ("extractor", "JSON: what is 2+2?", []),
            ]
            for agent, text, tags in queries:
                result = await rt.run(agent, text, tags=tags)
                print(f"{agent} {text!r} {tags}: {result.output}")
                for event in await rt.store.read_events(result.run_id):
                    if event.type == ev.MODEL_CALL:
                        print(f"  step {event.step} routed: {event.data['routing']}")
                    elif event.type == ev.MODEL_CHECKED and not event.data["passed"]:
                        print(f"  step {event.step} check failed: {event.data['why']}")
                again = await rt.replay(result.run_id)  # the recorded decisions, no model call
                assert again.output == result.output


if __name__ == "__main__":
    asyncio.run(main())
