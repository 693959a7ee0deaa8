"""Who did what to a run: who started it (kept on the run, its first event, its child
runs and its forks), who cancelled it and when, who resumed it."""

from __future__ import annotations

import asyncio

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.errors import ConflictError
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import resources, rules
from tests.engine.test_agent_tool import RULES, _team


async def test_a_runs_principal_is_kept_on_it_its_children_and_its_forks(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(RULES)
    async with Runtime(store) as rt:
        await rt.apply(_team(model_server.url))
        run = await rt.submit("lead", "plan it", principal="key:alice")
        result = await rt.wait(run.id)
        forked = await rt.fork(run.id, from_step=1, principal="key:bob")
        await rt.wait(forked.id)
        anonymous = await rt.run("lead", "plan it")
    assert result.status == "succeeded"
    runs = {r.id: r for r in await store.list_runs()}
    assert runs[run.id].principal == "key:alice"
    children = [r for r in runs.values() if r.parent_run == run.id and r.fork_step is None]
    assert [c.principal for c in children] == ["key:alice"], "a child acts for its parent's"
    assert runs[forked.id].principal == "key:bob"
    assert runs[anonymous.run_id].principal is None
    first = (await store.read_events(run.id))[0]
    assert first.type == ev.RUN_CREATED and first.data["by"] == "key:alice"
    assert (await store.read_events(forked.id))[0].data["by"] == "key:bob"
    assert "by" not in (await store.read_events(anonymous.run_id))[0].data
    assert [r.id for r in await store.list_runs(principal="key:alice")] == [
        children[0].id,
        run.id,
    ]


async def test_a_cancel_names_who_asked_and_when_and_a_resume_who_resumed(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "late"}))
    model_server.inject_delay(60)
    async with Runtime(store, clock=lambda: 1000.0) as rt:
        await rt.apply(resources(model_server.url))
        run = await rt.submit("bot", "hi", principal="key:alice")
        while not model_server.requests:
            await asyncio.sleep(0.01)
        cancelled = await rt.cancel(run.id, by="key:carol")
        again = await rt.cancel(run.id, by="key:dave")
        with pytest.raises(ConflictError, match="already cancelled"):
            await rt.resume(run.id, by="key:erin")
    assert cancelled.status == "cancelled" and again.cancel_by == "key:carol"
    end = (await store.read_events(run.id))[-1]
    assert end.type == ev.RUN_FINISHED
    assert (end.data["status"], end.data["by"], end.data["asked_at"]) == (
        "cancelled",
        "key:carol",
        1000.0,
    )


async def test_a_resume_is_named_in_the_execution_it_starts(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        run = await rt.submit("bot", "hi", start=False)
        resumed = await rt.resume(run.id, wait=False, by="key:erin")
        assert resumed.status == "running"
        result = await rt.wait(run.id)
    assert result.output == "done"
    started = [e for e in await store.read_events(run.id) if e.type == ev.RUN_STARTED]
    assert [e.data.get("by") for e in started] == ["key:erin"]
