"""Session memory policies and long-term memory, on a real Runtime over the HTTP test model."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.engine.history_policy import Summary, Turn, history_budget, plan_history, with_summary
from agentrt.engine.summaries import summary_of
from agentrt.errors import UsageError
from agentrt.models.testserver import ModelTestServer
from agentrt.models.tokens import estimate_tokens
from agentrt.spec.loader import parse_resource
from agentrt.spec.resources import ModelSpec, SessionMemory
from agentrt.state import Event, SqliteStore
from tests.conftest import call, resources, rules

FILLER = "x" * 200  # each turn is about 110 estimated tokens, both ways


def summary_steps(events: list[Event]) -> list[int]:
    """The steps of a run that summarised its session's earlier turns."""
    return [e.step for e in events if e.type == ev.MODEL_CALL and e.data.get("kind") == "summary"]


def turn(i: int, size: int = 40) -> Turn:
    return Turn(
        f"r{i}",
        [
            {"role": "user", "content": f"u{i}".ljust(size, "u")},
            {"role": "assistant", "content": "a" * size},
        ],
    )


# --- the policy alone ---------------------------------------------------------


def test_window_keeps_the_latest_whole_turns_that_fit() -> None:
    turns = [turn(i) for i in range(10)]  # 20 tokens each
    plan = plan_history(SessionMemory(policy="window"), turns, 70)
    assert plan.messages == [m for t in turns[-3:] for m in t.messages]
    assert not plan.fold


def test_full_history_grows_without_bound() -> None:
    turns = [turn(i) for i in range(50)]
    assert estimate_tokens(plan_history(SessionMemory(), turns, None).messages) == 50 * 20


def test_summary_folds_older_turns_and_keeps_the_latest() -> None:
    policy = SessionMemory(policy="summary", keep_turns=2)
    turns = [turn(i) for i in range(10)]
    assert plan_history(policy, turns[:3], 70).fold == []  # fits: nothing to fold
    plan = plan_history(policy, turns, 70)
    assert [t.run_id for t in plan.fold] == [f"r{i}" for i in range(8)]
    assert [t.run_id for t in plan.kept] == ["r8", "r9"]
    # A later run starts from the summary recorded by the run after r7.
    summarised = Turn("r10", turns[0].messages, Summary("S", through="r7"))
    later = plan_history(policy, [*turns, summarised], 70)
    assert later.fold == []
    assert later.messages[0]["content"].endswith("\nS")
    assert len(later.messages) == 1 + 2 * 3  # summary, then r8, r9, r10


def test_a_long_summary_is_cut_to_leave_room_for_turns() -> None:
    messages = with_summary(Summary("s" * 4000, "r0"), [turn(1)], 100)
    assert estimate_tokens(messages) <= 100
    assert messages[1:] == turn(1).messages


def test_a_limiting_policy_needs_a_budget() -> None:
    model = ModelSpec(provider="scripted")
    with pytest.raises(UsageError, match=r"memory.session.max_tokens.*context_window on Model 'm'"):
        history_budget(SessionMemory(policy="window"), model, "m")
    sized = ModelSpec(provider="scripted", context_window=8000)
    assert history_budget(SessionMemory(policy="summary"), sized, "m") == 4000
    assert history_budget(SessionMemory(policy="full"), sized, "m") is None


# --- a 200-turn session -------------------------------------------------------


def session_resources(url: str, memory: dict[str, Any]) -> list[Any]:
    return resources(url, model={"context_window": 1000}, agent={"memory": {"session": memory}})


async def prompt_sizes(store: SqliteStore, session: str) -> list[int]:
    sizes = []
    for run in await store.list_runs(session_id=session, limit=1000):
        events = await store.read_events(run.id)
        summarising = summary_steps(events)
        for event in events:
            if event.type == ev.MODEL_RESULT and event.step not in summarising:
                sizes.append(event.data["in"])
    return sizes


@pytest.mark.parametrize("policy", ["window", "summary"])
async def test_a_200_turn_session_stays_within_the_context_window(
    policy: str, store: SqliteStore, model_server: ModelTestServer
) -> None:
    summariser = rules({"content": "The user is Ada and counts turns."}, match="^Summarise this")
    model_server.set_rules(summariser)  # other requests get "You said: <input>"
    async with Runtime(store) as rt:
        await rt.apply(session_resources(model_server.url, {"policy": policy}))
        for i in range(200):
            result = await rt.run("bot", f"turn {i}: my name is Ada. {FILLER}", session="long")
            assert result.status == "succeeded", result.reason
    sizes = await prompt_sizes(store, "long")
    assert len(sizes) == 200
    # Without the policy the last prompt would hold all 199 earlier turns (~22,000 tokens).
    assert max(sizes) <= 1000
    assert sizes[-1] > 300, "the history is used, not dropped"
    last = model_server.requests[-1]["messages"]
    assert "turn 198" in last[-3]["content"], "the latest turns are kept word for word"
    summaries = [
        summary
        for r in await store.list_runs(session_id="long", limit=1000)
        if (summary := summary_of(await store.read_events(r.id))) is not None
    ]
    if policy == "summary":
        assert 0 < len(summaries) < 100
        assert last[1]["content"].endswith("The user is Ada and counts turns.")
        # The summariser's calls are the run's usage too.
        run = await store.get_run(summaries[-1].through)
        assert run is not None
    else:
        assert summaries == []


async def test_a_summarising_turn_replays_from_its_log(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "Short summary."}, match="^Summarise this"))
    async with Runtime(store) as rt:
        await rt.apply(
            session_resources(model_server.url, {"policy": "summary", "max_tokens": 300})
        )
        results = [await rt.run("bot", f"turn {i} {FILLER}", session="s") for i in range(6)]
        summarising = [
            r for r in results if summary_of(await store.read_events(r.run_id)) is not None
        ]
        assert summarising, "six turns of ~110 tokens outgrow a 300-token budget"
        target = summarising[-1]
        summary = summary_of(await store.read_events(target.run_id))
        run = await store.get_run(target.run_id)
        assert run is not None and run.usage.model_calls == 2  # the summary and the answer
        assert summary is not None and summary.text == "Short summary."
        served = model_server.completions_served
        replayed = await rt.replay(target.run_id)
        assert (replayed.status, replayed.output) == ("succeeded", target.output)
        assert model_server.completions_served == served, "replay asks no model"


async def test_a_policy_without_a_budget_fails_the_run_clearly(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    async with Runtime(store) as rt:
        await rt.apply(
            resources(model_server.url, agent={"memory": {"session": {"policy": "window"}}})
        )
        result = await rt.run("bot", "hello", session="s")
    assert result.status == "failed"
    assert "memory.session.max_tokens" in (result.reason or "")


# --- long-term memory ---------------------------------------------------------


def memory_resources(url: str, namespace: str = "default") -> list[Any]:
    tool = parse_resource(
        {
            "apiVersion": "agentrt.dev/v1",
            "kind": "Tool",
            "metadata": {"name": "memory", "namespace": namespace},
            "spec": {"kind": "memory"},
        }
    )
    return [*resources(url, agent={"tools": ["memory"]}, namespace=namespace), tool]


MEMORY_SCRIPT = [
    *rules(
        {"tool_calls": [call("remember", text="{input}")]}, {"content": "noted"}, match="^Remember"
    ),
    *rules(
        {"tool_calls": [call("recall", query="{input}")]},
        {"content": "{last_tool_result}"},
        match="^What",
    ),
]


async def test_a_fact_remembered_in_one_session_is_found_in_a_later_one(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(MEMORY_SCRIPT)
    fact = "Remember that the billing service deploys on Thursdays"
    async with Runtime(store) as rt:
        await rt.apply(memory_resources(model_server.url))
        await rt.apply(memory_resources(model_server.url, namespace="other"))
        stored = await rt.run("bot", fact, session="monday")
        assert (stored.status, stored.output) == ("succeeded", "noted")
        later = await rt.run("bot", "What day does billing deploy?", session="friday")
        elsewhere = await rt.run(
            "bot", "What day does billing deploy?", session="x", namespace="other"
        )
    assert later.status == "succeeded"
    assert later.output == f"- {fact}"
    assert elsewhere.output == "no remembered fact matches"
    facts = await store.list_memory("default")
    assert [(f.text, f.session_id, f.run_id) for f in facts] == [(fact, "monday", stored.run_id)]
    # The search is in the later run's tool trace.
    result = next(e for e in await store.read_events(later.run_id) if e.type == ev.TOOL_RESULT)
    assert result.data["trace"]["found"] == [facts[0].id]


async def test_a_read_only_memory_tool_offers_only_recall(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    docs = memory_resources(model_server.url)
    tool = parse_resource(
        {
            "apiVersion": "agentrt.dev/v1",
            "kind": "Tool",
            "metadata": {"name": "memory"},
            "spec": {"kind": "memory", "memory": {"write": False}},
        }
    )
    model_server.set_rules(MEMORY_SCRIPT)
    async with Runtime(store) as rt:
        await rt.apply([*docs[:-1], tool])
        result = await rt.run("bot", "Remember this", session="s")
    offered = [t["function"]["name"] for t in model_server.requests[0]["tools"]]
    assert offered == ["recall"]
    assert result.status == "succeeded"
    assert await store.list_memory("default") == []


async def test_a_resumed_turn_keeps_the_summary_it_recorded(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "Short summary."}, match="^Summarise this"))
    docs = session_resources(model_server.url, {"policy": "summary", "max_tokens": 300})
    async with Runtime(store) as rt:
        await rt.apply(docs)
        for i in range(3):
            await rt.run("bot", f"turn {i} {FILLER}", session="s")
        # The next turn summarises, then its answer is slow: the runtime stops meanwhile.
        model_server.inject_delay(0.0, count=1)  # the summary request
        model_server.inject_delay(30.0, count=1)  # the turn's own model call
        asked = len(model_server.requests)
        run = await rt.submit("bot", f"turn 3 {FILLER}", session="s")
        for _ in range(500):  # the summary answered and the turn's own call is in flight
            if len(model_server.requests) >= asked + 2:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the turn never asked for its answer")
    # Stopping kept what the run had done: its summary step is in the log.
    assert len(summary_steps(await store.read_events(run.id))) == 1
    interrupted = await store.get_run(run.id)
    assert interrupted is not None and interrupted.status == "running"
    model_server.clear_injections()
    summaries_asked = sum(
        1 for r in model_server.requests if "Summarise this" in str(r["messages"][-1]["content"])
    )
    async with Runtime(store, resume_interrupted=False) as rt:
        result = await rt.resume(run.id)
    assert result.status == "succeeded", result.reason
    events = await store.read_events(run.id)
    assert len(summary_steps(events)) == 1
    asked_after = sum(
        1 for r in model_server.requests if "Summarise this" in str(r["messages"][-1]["content"])
    )
    assert asked_after == summaries_asked == 1, "the resumed turn used its recorded summary"
