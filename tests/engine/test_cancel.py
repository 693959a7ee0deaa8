"""Cancelling a run that another runtime executes: it stops promptly, and once the
cancel is acknowledged the run takes no other step and never ends otherwise.

Two runtimes on two connections to one SQLite file stand for two processes (the
CLI test in tests/cli/test_cli.py does it with real ones).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import call, resources, rules


async def _in_model_call(server: ModelTestServer, calls: int) -> None:
    while len(server.requests) < calls:
        await asyncio.sleep(0.01)


async def test_cancel_from_another_runtime_stops_the_run_promptly(
    model_server: ModelTestServer, stores: tuple[SqliteStore, SqliteStore]
) -> None:
    model_server.set_rules(rules({"content": "too late"}))
    model_server.inject_delay(60)  # the run's model call would answer in a minute
    owner_store, other_store = stores
    # A lease renewed every 20 minutes: noticing the cancel must not wait for it.
    async with (
        Runtime(owner_store, lease_ttl_s=3600) as owner,
        Runtime(other_store, resume_interrupted=False) as other,
    ):
        await owner.apply(resources(model_server.url))
        run = await owner.submit("bot", "hi")
        await asyncio.wait_for(_in_model_call(model_server, 1), 30)
        requested = await other.cancel(run.id)
        assert requested.cancel_requested
        # A safety net against a hang, far below the lease's renewal and the reply.
        result = await asyncio.wait_for(owner.wait(run.id), 20)
    assert result.status == "cancelled" and result.output is None
    events = await owner_store.read_events(run.id)
    assert [e.data["status"] for e in events if e.type == ev.RUN_FINISHED] == ["cancelled"]


async def test_an_acknowledged_cancel_wins_over_the_end_the_run_reaches(
    model_server: ModelTestServer, stores: tuple[SqliteStore, SqliteStore]
) -> None:
    model_server.set_rules(rules({"content": "done anyway"}))
    model_server.inject_delay(1.0)
    owner_store, other_store = stores
    # The owner never polls for cancels here: only the store's conditional end decides.
    async with (
        Runtime(owner_store, notice_cancels=False) as owner,
        Runtime(other_store, resume_interrupted=False) as other,
    ):
        await owner.apply(resources(model_server.url))
        run = await owner.submit("bot", "hi")
        await asyncio.wait_for(_in_model_call(model_server, 1), 30)
        acknowledged = await other.cancel(run.id)
        assert acknowledged.cancel_requested and not acknowledged.finished
        result = await owner.wait(run.id)
    assert result.status == "cancelled", result
    run_row = await owner_store.get_run(run.id)
    assert run_row is not None and run_row.status == "cancelled"
    events = await owner_store.read_events(run.id)
    assert [e.data["status"] for e in events if e.type == ev.RUN_FINISHED] == ["cancelled"]
    # The model's answer was paid for: it is recorded, though it ends nothing.
    assert [e.data["content"] for e in events if e.type == ev.MODEL_RESULT] == ["done anyway"]
    assert events[-1].type == ev.RUN_FINISHED


async def test_after_an_acknowledged_cancel_no_tool_call_starts(
    model_server: ModelTestServer,
    stores: tuple[SqliteStore, SqliteStore],
    effects: Path,
) -> None:
    model_server.set_rules(rules({"tool_calls": [call("charge", amount=5)]}, {"content": "ok"}))
    model_server.inject_delay(1.0)  # the model asks for the charge a second after the cancel
    owner_store, other_store = stores
    async with (
        Runtime(owner_store, notice_cancels=False) as owner,
        Runtime(other_store, resume_interrupted=False) as other,
    ):
        await owner.apply(resources(model_server.url, tools=["charge"]))
        run = await owner.submit("bot", "pay")
        await asyncio.wait_for(_in_model_call(model_server, 1), 30)
        await other.cancel(run.id)
        result = await owner.wait(run.id)
    assert result.status == "cancelled", result
    assert not effects.exists(), "the charge never ran"
    events = await owner_store.read_events(run.id)
    assert not [e for e in events if e.type == ev.TOOL_CALL], "no tool step was recorded"
    run_row = await owner_store.get_run(run.id)
    assert run_row is not None and run_row.usage.tool_calls == 0
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
