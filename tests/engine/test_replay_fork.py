"""Replay reproduces a run from its log alone; fork shares a prefix and diverges."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.errors import NondeterminismError
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import call, resources, rules
from tests.engine.test_memory import FILLER

SCRIPT = rules(
    {"tool_calls": [call("record", text="one"), call("add", a=20, b=22)]},
    {"tool_calls": [call("record", text="two")]},
    {"content": "all done: {last_tool_result}"},
)


async def test_replay_makes_no_calls_and_reproduces(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(SCRIPT)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["record", "add"]))
        original = await rt.run("bot", "go")
        seq_before = (await store.get_run(original.run_id)).last_seq  # type: ignore[union-attr]
        model_server.reset_log()
        effects_before = effects.read_text()
        replayed = await rt.replay(original.run_id)
    assert model_server.requests == []  # zero HTTP requests
    assert effects.read_text() == effects_before  # zero tool side effects
    assert replayed == original
    run = await store.get_run(original.run_id)
    assert run is not None and run.last_seq == seq_before  # replay wrote nothing


async def test_replay_detects_a_changed_loop(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(SCRIPT)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["record", "add"]))
        original = await rt.run("bot", "go")
        # A hook that changes what the model is asked makes the log no longer match.
        rt.add_hook(
            "before_model", lambda ctx, req: type(req)(req.model, req.messages[1:], req.tools)
        )
        with pytest.raises(NondeterminismError, match="differs from the recorded one"):
            await rt.replay(original.run_id)


async def test_fork_shares_prefix_and_diverges(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(SCRIPT)
    # The scripted step index counts assistant turns, so the other model's reply
    # after one recorded turn is its second step.
    hi = {"content": "the other model says hi"}
    async with ModelTestServer(rules(hi, hi)) as other, Runtime(store) as rt:
        await rt.apply(
            resources(
                model_server.url,
                tools=["record", "add"],
                extra_models={"other": {"provider": "openai", "base_url": other.url}},
            )
        )
        original = await rt.run("bot", "go")
        model_server.reset_log()
        fork = await rt.fork(original.run_id, from_step=3, model="other")
        forked = await rt.wait(fork.id)
    parent_events = await store.read_events(original.run_id)
    fork_events = await store.read_events(fork.id)
    shared = lambda events: [(e.type, e.step, e.data) for e in events if e.step and e.step <= 3]  # noqa: E731
    assert shared(fork_events) == shared(parent_events)
    assert model_server.requests == []  # the prefix was not re-done
    assert len(other.requests) == 1  # the new model took over after step 3
    assert forked.output == "the other model says hi"
    assert forked.output != (await rt_output(store, original.run_id))
    run = await store.get_run(fork.id)
    assert run is not None and run.parent_run == original.run_id and run.fork_step == 3
    # The parent's tool effects were not repeated by the fork: only 2 records exist.
    assert effects.read_text().count("\trecord\t") == 2


async def rt_output(store: SqliteStore, run_id: str) -> str | None:
    events = await store.read_events(run_id)
    return next(e.data["output"] for e in events if e.type == ev.RUN_FINISHED)


async def test_fork_with_new_instructions_redoes_later_steps(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(SCRIPT)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["record", "add"]))
        original = await rt.run("bot", "go")
        model_server.reset_log()
        fork = await rt.fork(original.run_id, from_step=1, instructions="Be brief.")
        forked = await rt.wait(fork.id)
        replayed_fork = await rt.replay(fork.id)
    assert forked.ok and forked.output == "all done: recorded two"
    # Steps 2.. ran again in the fork, with the new system prompt.
    assert model_server.requests[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert len(model_server.requests) == 2
    fork_keys = [line.split("\t")[0] for line in effects.read_text().splitlines()]
    assert sum(key.startswith(fork.id) for key in fork_keys) == 2
    assert replayed_fork == forked


async def test_fork_step_out_of_range(store: SqliteStore, model_server: ModelTestServer) -> None:
    model_server.set_rules(rules({"content": "x"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        original = await rt.run("bot", "go")
        with pytest.raises(Exception, match="between 0 and 1"):
            await rt.fork(original.run_id, from_step=9)


async def test_a_fork_is_created_leased_so_no_worker_takes_it_before_it_starts(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "x"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        original = await rt.run("bot", "go")
        # Created queued, a fork could be claimed by a worker serving the queue (this
        # process's too) before its creator started it, and execute twice.
        fork = await rt.fork(original.run_id, from_step=0)
        assert (fork.status, fork.lease_owner, fork.lease_token) == ("running", rt.owner, 1)
        assert await store.claim_runs("another-worker", 30.0, now=time.time()) == []
        result = await rt.wait(fork.id)
    assert result.status == "succeeded"
    started = [e for e in await store.read_events(fork.id) if e.type == ev.RUN_STARTED]
    assert len(started) == 1


# --- every finished run replays to its recorded end ---------------------------------


async def test_a_run_its_model_failed_replays_to_its_recorded_end(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"tool_calls": [call("add", a=1, b=2)]}, {"content": "never"}))
    async with Runtime(store) as rt:
        # The first model step answers; every attempt of the second fails.
        rt.add_hook("before_tool", lambda ctx, tool_call: model_server.inject(500, count=10))
        await rt.apply(resources(model_server.url, tools=["add"]))
        failed = await rt.run("bot", "x")
        model_server.reset_log()
        replayed = await rt.replay(failed.run_id)
    assert failed.status == "failed" and "HTTP 500" in (failed.reason or "")
    assert replayed == failed
    assert model_server.requests == []


async def test_a_run_with_impossible_usage_replays_to_its_recorded_end(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "fine"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        model_server.inject_reply(usage={"prompt_tokens": -1})
        failed = await rt.run("bot", "x")
        replayed = await rt.replay(failed.run_id)
    assert failed.status == "failed" and replayed == failed


async def test_a_run_whose_summary_model_failed_replays_to_its_recorded_end(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    # No rules: every reply is "You said: <input>", so each turn is about 110 tokens.
    memory = {"policy": "summary", "max_tokens": 300, "summary_model": "summariser"}
    async with ModelTestServer() as broken:
        broken.inject(500, count=1000)
        summariser = {"provider": "openai", "base_url": broken.url, "max_retries": 0}
        docs = resources(
            model_server.url,
            model={"context_window": 1000},
            agent={"memory": {"session": memory}},
            extra_models={"summariser": summariser},
        )
        async with Runtime(store) as rt:
            await rt.apply(docs)
            results = [await rt.run("bot", f"turn {i} {FILLER}", session="s") for i in range(6)]
            failed = [r for r in results if r.status == "failed"]
            assert failed, "six turns of ~110 tokens outgrow a 300-token budget"
            served = broken.completions_served + len(broken.requests)
            replayed = await rt.replay(failed[0].run_id)
            assert broken.completions_served + len(broken.requests) == served
    assert "summariser" in (failed[0].reason or "") or "500" in (failed[0].reason or "")
    assert replayed == failed[0]


async def test_a_run_a_hook_failed_replays_to_its_recorded_end(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "an answer"}))

    def broken(ctx: object, response: object) -> None:
        raise ValueError("the hook is broken")

    async with Runtime(store) as rt:
        rt.add_hook("after_model", broken)
        await rt.apply(resources(model_server.url))
        failed = await rt.run("bot", "x")
        replayed = await rt.replay(failed.run_id)
    assert (failed.status, failed.reason) == ("failed", "ValueError: the hook is broken")
    assert replayed == failed
