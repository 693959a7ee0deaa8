"""A run that cannot start (a tool or hook that does not import, a missing API key)
ends `failed` with the reason, and no worker picks it up again."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import parse_resource
from agentrt.state import SqliteStore
from tests.conftest import resources, rules


async def test_a_missing_api_key_ends_the_run_failed_with_the_reason(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "never asked"}))
    async with Runtime(store, environ={}) as rt:
        await rt.apply(resources(model_server.url, model={"api_key_env": "AGENTRT_TEST_NO_KEY"}))
        result = await rt.run("bot", "x")
    assert result.status == "failed"
    assert result.reason is not None and "AGENTRT_TEST_NO_KEY" in result.reason
    assert "could not start" in result.reason
    run = await store.get_run(result.run_id)
    assert run is not None and run.status == "failed" and run.lease_owner is None
    finished = (await store.read_events(result.run_id))[-1]
    assert finished.type == ev.RUN_FINISHED
    assert finished.data["error"]["code"] == "start_failed"
    assert not model_server.requests
    # A finished run is not resumed; replay reports its recorded end.
    async with Runtime(store, environ={}) as again:
        assert await again.resume_interrupted() == []
        replayed = await again.replay(result.run_id)
    assert replayed.status == "failed" and replayed.reason == result.reason


async def test_a_queued_run_a_worker_cannot_start_is_not_retried_every_poll(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    async with Runtime(store, environ={}) as rt:
        await rt.apply(resources(model_server.url, model={"api_key_env": "AGENTRT_TEST_NO_KEY"}))
        queued = await rt.submit("bot", "x", start=False)
    # What `agentrt worker` does on every poll.
    async with Runtime(store, environ={}, resume_interrupted=False) as worker:
        assert queued.id in await worker.resume_interrupted()
        await worker.wait(queued.id)
        assert await worker.resume_interrupted() == []
    run = await store.get_run(queued.id)
    assert run is not None and run.status == "failed"
    assert "AGENTRT_TEST_NO_KEY" in (run.reason or "")


async def test_a_tool_that_no_longer_imports_ends_the_run_failed(
    store: SqliteStore,
    model_server: ModelTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Applied where the module imports; run where it does not (another directory).
    (tmp_path / "moving_tools.py").write_text("def ping() -> str:\n    return 'pong'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model_server.set_rules(rules({"content": "never asked"}))
    tool = parse_resource(
        {
            "apiVersion": "agentrt.dev/v1",
            "kind": "Tool",
            "metadata": {"name": "ping"},
            "spec": {"kind": "python", "callable": "moving_tools:ping"},
        }
    )
    async with Runtime(store) as rt:
        await rt.apply([tool, *resources(model_server.url, agent={"tools": ["ping"]})])
        sys.path.remove(str(tmp_path))
        sys.modules.pop("moving_tools", None)
        importlib.invalidate_caches()
        result = await rt.run("bot", "x")
    assert result.status == "failed"
    assert "moving_tools" in (result.reason or "") and "PYTHONPATH" in (result.reason or "")
    assert not model_server.requests


async def test_a_hook_that_does_not_import_ends_the_run_failed(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "never asked"}))
    agent = resources(model_server.url)[-1].model_dump(mode="json")
    agent["spec"]["hooks"] = {"on_step": "tests.sample_hooks:no_such_hook"}
    async with Runtime(store) as rt:
        # Stored as a run's frozen spec would be after the hook was renamed.
        await rt.apply(resources(model_server.url))
        await store.put_resource("Agent", "default", "bot", agent, now=1.0)
        result = await rt.run("bot", "x")
    assert result.status == "failed" and "no_such_hook" in (result.reason or "")
