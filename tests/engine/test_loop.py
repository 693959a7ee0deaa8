"""The reasoning loop end to end: real SQLite store, real HTTP to the test server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.engine.agent_loop import retry_delay
from agentrt.errors import ToolError
from agentrt.models.base import RETRY_AFTER_CAP_S, ModelRequest
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import Budgets, RetryPolicy
from agentrt.state import SqliteStore
from tests.conftest import call, resources, rules


async def test_tool_calls_then_answer(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(
        rules(
            {"tool_calls": [call("add", a=2, b=3), call("record", text="hello")]},
            {"content": "sum is {last_tool_result}"},
        )
    )
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["add", "record"]))
        result = await rt.run("bot", "add things")
    assert result.status == "succeeded"
    assert result.output == "sum is recorded hello"
    assert result.usage.model_calls == 2 and result.usage.tool_calls == 2
    assert result.usage.input_tokens > 0 and result.usage.cost_usd > 0
    events = await store.read_events(result.run_id)
    types = [e.type for e in events]
    assert types[:2] == [ev.RUN_CREATED, ev.RUN_STARTED]
    assert types.count(ev.MODEL_CALL) == 2 and types.count(ev.MODEL_RESULT) == 2
    assert types.count(ev.TOOL_CALL) == 2 and types.count(ev.TOOL_RESULT) == 2
    assert types[-1] == ev.RUN_FINISHED
    tool_results = {e.step: e.data["output"] for e in events if e.type == ev.TOOL_RESULT}
    assert tool_results == {2: "5", 3: "recorded hello"}
    # The model saw the tools and, on its second call, both results in call order.
    second = model_server.requests[-1]
    assert {t["function"]["name"] for t in second["tools"]} == {"add", "record"}
    assert [m["content"] for m in second["messages"] if m["role"] == "tool"] == [
        "5",
        "recorded hello",
    ]
    run = await store.get_run(result.run_id)
    assert run is not None and run.status == "succeeded" and run.usage.tool_calls == 2
    assert effects.read_text().count("\trecord\t") == 1


async def test_session_second_query_sees_first(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "answer to {input}"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        first = await rt.run("bot", "first question", session="chat")
        second = await rt.run("bot", "second question", session="chat")
        other = await rt.run("bot", "unrelated", session="other")
    assert first.ok and second.ok and other.ok
    contents = [m["content"] for m in model_server.requests[1]["messages"]]
    assert contents == [
        "You are a test bot.",
        "first question",
        "answer to first question",
        "second question",
    ]
    assert [m["content"] for m in model_server.requests[2]["messages"]][1:] == ["unrelated"]
    runs = await store.list_runs(session_id="chat")
    assert [r.turn for r in runs] == [0, 1]


async def test_hooks_edit_request_deny_tool_and_see_finish(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(
        rules({"tool_calls": [call("charge", amount=5)]}, {"content": "{last_tool_result}"})
    )
    seen: list[Any] = []

    def add_context(ctx: Any, request: ModelRequest) -> ModelRequest:
        return ModelRequest(
            request.model,
            [*request.messages, {"role": "system", "content": "hooked"}],
            request.tools,
        )

    def deny(ctx: Any, tool_call: Any) -> None:
        raise ToolError(f"{tool_call.name} denied by policy")

    async with Runtime(store) as rt:
        rt.add_hook("before_model", add_context)
        rt.add_hook("before_tool", deny)
        rt.add_hook("on_finish", lambda ctx, result: seen.append(result.status))
        await rt.apply(resources(model_server.url, tools=["charge"]))
        result = await rt.run("bot", "pay")
    assert result.output == "charge denied by policy"
    assert seen == ["succeeded"]
    assert model_server.requests[0]["messages"][-1] == {"role": "system", "content": "hooked"}
    assert not effects.exists()  # the denied tool never ran


async def test_budgets_end_the_run_with_reason(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    step = {"tool_calls": [call("add", a=1, b=1), call("add", a=2, b=2)]}
    model_server.set_rules(rules(*[step] * 5))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["add"], agent={"loop": {"max_steps": 3}}))
        tools = await rt.run("bot", "x", budgets=Budgets(max_tool_calls=1))
        tokens = await rt.run("bot", "x", budgets=Budgets(max_tokens=5))
        steps = await rt.run("bot", "x")
    assert tools.status == "budget_exhausted" and "max_tool_calls=1" in (tools.reason or "")
    assert tokens.status == "budget_exhausted" and "max_tokens=5" in (tokens.reason or "")
    assert steps.status == "budget_exhausted" and "max_steps=3" in (steps.reason or "")
    assert steps.usage.model_calls == 3


async def test_retry_then_fallback_model(store: SqliteStore, model_server: ModelTestServer) -> None:
    model_server.set_rules(rules({"content": "ok"}))
    async with ModelTestServer(rules({"content": "from backup"})) as backup:
        async with Runtime(store) as rt:
            await rt.apply(
                resources(
                    model_server.url,
                    model={"fallbacks": ["backup"]},
                    extra_models={
                        "backup": {"provider": "openai", "base_url": backup.url, "max_retries": 0}
                    },
                )
            )
            model_server.inject(503, count=1)
            retried = await rt.run("bot", "x")
            model_server.inject(400, count=1)
            fell_back = await rt.run("bot", "y")
    assert retried.output == "ok"
    errors = [e for e in await store.read_events(retried.run_id) if e.type == ev.MODEL_ERROR]
    assert len(errors) == 1 and errors[0].data["error"]["status"] == 503
    assert fell_back.output == "from backup"
    results = [e for e in await store.read_events(fell_back.run_id) if e.type == ev.MODEL_RESULT]
    assert results[0].data["via"] == "backup"


async def test_model_failure_is_recorded(store: SqliteStore, model_server: ModelTestServer) -> None:
    model_server.set_rules(rules({"content": "never"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        model_server.inject(500, count=10)
        result = await rt.run("bot", "x")
    assert result.status == "failed" and "500" in (result.reason or "")
    finished = (await store.read_events(result.run_id))[-1]
    assert finished.type == ev.RUN_FINISHED and finished.data["error"]["code"] == "model_error"


async def test_timeouts(store: SqliteStore, model_server: ModelTestServer) -> None:
    model_server.set_rules(
        rules({"tool_calls": [call("sleep", seconds=5)]}, {"content": "after {last_tool_result}"})
    )
    loop = {"step_timeout_s": 0.3, "retry": {"max_attempts": 1}}
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["sleep"], agent={"loop": loop}))
        tool_timeout = await rt.run("bot", "x")
        model_server.inject_delay(5, count=1)
        model_timeout = await rt.run("bot", "y")
        deadline = await rt.run("bot", "z", budgets=Budgets(deadline_s=0.2))
    # A slow tool is an observation for the model; the run goes on.
    assert tool_timeout.status == "succeeded"
    assert tool_timeout.output == "after tool 'sleep' timed out after 0.3s"
    assert model_timeout.status == "timed_out" and "step_timeout_s" in (model_timeout.reason or "")
    assert deadline.status == "timed_out" and "deadline_s" in (deadline.reason or "")


async def test_cancel_a_running_run(store: SqliteStore, model_server: ModelTestServer) -> None:
    model_server.set_rules(rules({"tool_calls": [call("sleep", seconds=30)]}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["sleep"]))
        run = await rt.submit("bot", "x")
        while not any(e.type == ev.TOOL_CALL for e in await store.read_events(run.id)):
            await asyncio.sleep(0.01)
        cancelled = await rt.cancel(run.id)
    assert cancelled.status == "cancelled"
    assert (await store.read_events(run.id))[-1].data["status"] == "cancelled"


async def test_idempotency_key_submits_once(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        a = await rt.submit("bot", "x", idempotency_key="order-1")
        await rt.wait(a.id)
        b = await rt.submit("bot", "x", idempotency_key="order-1")
    assert a.id == b.id
    assert len(model_server.requests) == 1


async def test_unknown_tool_and_bad_arguments_are_observations(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        rules(
            {"tool_calls": [call("nope"), call("add", a="not a number", b=1)]},
            {"content": "{last_tool_result}"},
        )
    )
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["add"]))
        result = await rt.run("bot", "x")
    assert result.ok
    outputs = [m["content"] for m in model_server.requests[-1]["messages"] if m["role"] == "tool"]
    assert "unknown tool 'nope'" in outputs[0]
    assert "invalid arguments for add" in outputs[1]


async def test_hooks_declared_in_the_agent_spec(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "quiet words"}))
    hooks = {
        "before_model": "tests.sample_hooks:tag_request",
        "after_model": "tests.sample_hooks:shout",
    }
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, agent={"hooks": hooks}))
        result = await rt.run("bot", "x")
        replayed = await rt.replay(result.run_id)
    assert result.output == "QUIET WORDS" and replayed.output == "QUIET WORDS"
    assert model_server.requests[0]["messages"][-1] == {"role": "system", "content": "agent=bot"}


async def test_a_long_retry_after_waits_no_longer_than_the_step_timeout(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "ok"}))
    loop = {"step_timeout_s": 0.5, "retry": {"max_attempts": 2, "max_backoff_s": 0.05}}
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, agent={"loop": loop}))
        model_server.inject(429, retry_after=3600)
        result = await asyncio.wait_for(rt.run("bot", "x"), 30)
    assert result.ok and result.output == "ok"
    (error,) = [e for e in await store.read_events(result.run_id) if e.type == ev.MODEL_ERROR]
    assert error.data["error"]["retry_after"] == 3600
    assert error.data["retry_in"] == 0.5  # the step timeout, not the hour asked for


def test_every_retry_wait_is_capped() -> None:
    policy = RetryPolicy(initial_backoff_s=1, max_backoff_s=30, multiplier=10)
    assert retry_delay(policy, 1, None, step_timeout_s=120) == 1
    assert retry_delay(policy, 3, None, step_timeout_s=120) == 30  # max_backoff_s
    assert retry_delay(policy, 1, 5.0, step_timeout_s=120) == 5  # Retry-After honoured
    assert retry_delay(policy, 1, 3600.0, step_timeout_s=120) == RETRY_AFTER_CAP_S
    assert retry_delay(policy, 1, 3600.0, step_timeout_s=2) == 2
    assert retry_delay(policy, 3, None, step_timeout_s=2) == 2
