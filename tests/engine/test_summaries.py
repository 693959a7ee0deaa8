"""A session summary is a model step of its run: hooks, step limit, budgets and retries
wrap it as they wrap the loop's steps. Real Runtime and SQLite, the HTTP test model."""

from __future__ import annotations

from typing import Any

from agentrt import HookSet, Runtime
from agentrt.engine import events as ev
from agentrt.engine.summaries import summary_of
from agentrt.models.base import ModelRequest, ModelResponse
from agentrt.models.testserver import ModelTestServer
from agentrt.spec.resources import Budgets
from agentrt.state import SqliteStore
from tests.conftest import resources, rules

FILLER = "x" * 200  # each turn is about 110 estimated tokens, both ways
SUMMARY = rules({"content": "Short summary."}, match="^Summarise this")
FAST_RETRY = {"retry": {"initial_backoff_s": 0.0, "max_backoff_s": 0.0}}


def summarising(url: str, **agent: Any) -> list[Any]:
    """Agent ``bot`` whose session history is summarised past 300 tokens."""
    memory = {"session": {"policy": "summary", "max_tokens": 300}}
    return resources(url, agent={"memory": memory, **agent})


def is_summary(messages: list[Any]) -> bool:
    return str(messages[-1]["content"]).startswith("Summarise this")


async def fill_session(rt: Runtime, turns: int = 3) -> None:
    for i in range(turns):
        result = await rt.run("bot", f"turn {i} {FILLER}", session="s")
        assert result.status == "succeeded", result.reason


async def test_a_summary_passes_the_runs_model_hooks(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(SUMMARY)
    seen: list[tuple[str, str]] = []

    def before(ctx: Any, request: ModelRequest) -> None:
        seen.append(("before", "summary" if is_summary(request.messages) else "loop"))

    def after(ctx: Any, response: ModelResponse) -> ModelResponse | None:
        if response.content == "Short summary.":  # the summary, rewritten by the hook
            return ModelResponse(
                "SHORT SUMMARY.", [], response.input_tokens, response.output_tokens
            )
        return None

    hooks = HookSet().add("before_model", before).add("after_model", after)
    async with Runtime(store, hooks=hooks) as rt:
        await rt.apply(summarising(model_server.url))
        await fill_session(rt, 4)
        runs = await store.list_runs(session_id="s", limit=10)
        folded = [s for r in runs if (s := summary_of(await store.read_events(r.id)))]
    assert ("before", "summary") in seen
    # What the hook returned is the summary recorded and given to the model.
    assert folded and {s.text for s in folded} == {"SHORT SUMMARY."}
    last = model_server.requests[-1]["messages"]
    assert any(str(m["content"]).endswith("SHORT SUMMARY.") for m in last)


async def test_a_summary_is_one_of_the_runs_model_steps(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(SUMMARY)
    async with Runtime(store) as rt:
        await rt.apply(summarising(model_server.url, loop={"max_steps": 1, **FAST_RETRY}))
        await fill_session(rt, 3)  # no summary yet: one step each
        asked = len(model_server.requests)
        result = await rt.run("bot", f"turn 3 {FILLER}", session="s")
    # The summary took the run's only model step: no answer was asked for.
    assert result.status == "budget_exhausted"
    assert "loop.max_steps=1" in (result.reason or "")
    assert [is_summary(r["messages"]) for r in model_server.requests[asked:]] == [True]
    assert result.steps == 1 and result.usage.model_calls == 1


async def test_a_summary_spends_the_runs_token_budget(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(SUMMARY)
    async with Runtime(store) as rt:
        await rt.apply(summarising(model_server.url))
        await fill_session(rt, 3)
        asked = len(model_server.requests)
        result = await rt.run(
            "bot", f"turn 3 {FILLER}", session="s", budgets=Budgets(max_tokens=50)
        )
        run = await store.get_run(result.run_id)
    assert result.status == "budget_exhausted"
    assert "budgets.max_tokens=50 reached" in (result.reason or "")
    assert [is_summary(r["messages"]) for r in model_server.requests[asked:]] == [True]
    assert run is not None and run.usage.model_calls == 1 and run.usage.total_tokens >= 50


async def test_a_summary_is_retried_under_the_loop_policy(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(SUMMARY)
    async with Runtime(store) as rt:
        await rt.apply(summarising(model_server.url, loop=FAST_RETRY))
        await fill_session(rt, 3)
        model_server.inject(503, count=1)  # the summary's first attempt
        result = await rt.run("bot", f"turn 3 {FILLER}", session="s")
        events = await store.read_events(result.run_id)
        replayed = await rt.replay(result.run_id)
    assert result.status == "succeeded", result.reason
    [error] = [e for e in events if e.type == ev.MODEL_ERROR]
    assert error.step == 1 and error.data["attempt"] == 1
    summary = summary_of(events)
    assert summary is not None and summary.text == "Short summary."
    assert (replayed.status, replayed.output) == ("succeeded", result.output)
