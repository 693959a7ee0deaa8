"""Event observers watch a run; a broken one must not change how the run ends."""

from __future__ import annotations

from agentrt import Runtime
from agentrt.models.testserver import ModelTestServer
from agentrt.state import Event, SqliteStore
from tests.conftest import call, resources, rules


async def test_an_observer_that_raises_does_not_fail_the_run(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": "sum {last_tool_result}"})
    )
    seen: list[str] = []

    def broken(run_id: str, event: Event) -> None:
        seen.append(event.type)
        raise BrokenPipeError("stdout is gone")

    async with Runtime(store) as rt:
        rt.add_observer(broken)
        await rt.apply(resources(model_server.url, tools=["add"]))
        result = await rt.run("bot", "add them")
    assert (result.status, result.output) == ("succeeded", "sum 5")
    assert "run.finished" in seen  # it was called for every event, to the end
