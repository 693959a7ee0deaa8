"""Listening to a run live: while a feed is open its model steps stream their replies
piece by piece over real HTTP, and each step is still recorded once, whole; replay and
resume never see a piece, and with nobody listening no step streams."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import Delta
from agentrt.models.testserver import ModelTestServer
from agentrt.state import Event, SqliteStore
from tests.conftest import call, resources, rules

ANSWER = "five is the sum of two and three, as the tool said"


def streamed(server: ModelTestServer) -> list[bool]:
    """Whether each completion request asked for a stream."""
    return [bool(r.get("stream")) for r in server.requests]


def results(log: list[Event]) -> dict[int, Event]:
    """The ``model.result`` events of a log, by step."""
    return {e.step or 0: e for e in log if e.type == "model.result"}


async def test_a_listened_run_streams_each_reply_and_records_it_whole(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": ANSWER}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["add"]))
        run = await rt.submit("bot", "2+3?", start=False)
        with rt.live.listen(run.id) as feed:
            result = await rt.resume(run.id)
            pieces = feed.take()
        assert (result.status, result.output) == ("succeeded", ANSWER)
        log = await store.read_events(run.id)
        assert streamed(model_server) == [True, True]
        assert {"model.delta"}.isdisjoint(e.type for e in log)  # pieces are not recorded
        by_step: dict[int, list[Delta]] = {}
        for piece in pieces:
            by_step.setdefault(piece.step, []).append(piece)
        recorded = results(log)
        assert sorted(by_step) == sorted(recorded) == [1, 3]
        # The answer, word by word, is its recorded reply.
        answer = by_step[3]
        assert len(answer) > 3 and "".join(p.text for p in answer) == ANSWER
        assert recorded[3].data["content"] == ANSWER and recorded[3].data["out"] > 0
        # The tool call, in fragments, is the recorded call.
        fragments = [f for p in by_step[1] for f in p.tool_calls]
        [(call_id, name, arguments)] = recorded[1].data["calls"]
        assert [(f["id"], f["name"]) for f in fragments if "id" in f] == [(call_id, name)]
        assert "".join(f.get("arguments", "") for f in fragments) == arguments
        # Each piece names the step's call, written before it, and came before its result.
        calls = {e.step: e.seq for e in log if e.type == "model.call"}
        for piece in pieces:
            assert calls[piece.step] == piece.after < recorded[piece.step].seq
            assert (piece.run_id, piece.attempt, piece.model) == (run.id, 1, "m")

        # Replayed with a feed open: nothing is asked of the model, nothing is streamed.
        model_server.reset_log()
        with rt.live.listen(run.id) as feed:
            replayed = await rt.replay(run.id)
            assert feed.take() == []
        assert (replayed.status, replayed.output) == ("succeeded", ANSWER)
        assert model_server.requests == []


async def test_a_run_nobody_listens_to_asks_for_whole_replies(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": ANSWER}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["add"]))
        with rt.live.listen("another-run") as feed:
            result = await rt.run("bot", "2+3?")
            assert feed.take() == []
    assert result.output == ANSWER
    assert streamed(model_server) == [False, False]


@pytest.mark.parametrize(
    ("max_retries", "errors"),
    [(1, 0), (0, 1)],
    ids=["the client retries", "the step retries"],
)
async def test_a_stream_cut_off_starts_its_step_over_for_listeners(
    store: SqliteStore, model_server: ModelTestServer, max_retries: int, errors: int
) -> None:
    model_server.set_rules(rules({"content": ANSWER}))
    model_server.inject_reply(cut_after=3)  # the role and two words, then the line drops
    async with Runtime(store) as rt:
        model: dict[str, Any] = {"max_retries": max_retries}
        await rt.apply(resources(model_server.url, model=model))
        run = await rt.submit("bot", "tell me", start=False)
        with rt.live.listen(run.id) as feed:
            result = await rt.resume(run.id)
            pieces = feed.take()
        log = await store.read_events(run.id)
    assert result.output == ANSWER
    first = [p.text for p in pieces if p.attempt == 1]
    again = [p.text for p in pieces if p.attempt == 2]
    assert {p.attempt for p in pieces} == {1, 2}
    assert "".join(first) == "five is " and "".join(again) == ANSWER
    # The cut-off attempt left nothing in the step's record but (from the loop) its error.
    assert [e.type for e in log if e.step == 1] == ["model.call"] + ["model.error"] * errors + [
        "model.result"
    ]
    assert results(log)[1].data["content"] == ANSWER


async def test_a_run_stopped_mid_stream_resumes_with_the_whole_step(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": ANSWER}))
    model_server.chunk_delay_s = 0.2
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        run = await rt.submit("bot", "tell me", start=False)
        with rt.live.listen(run.id) as feed:
            task = asyncio.create_task(rt.resume(run.id))
            await asyncio.wait_for(feed.ready(), 10)
            assert [p.text for p in feed.take()] == ["five "]
        # The process stops while the reply is half written.
    with pytest.raises(asyncio.CancelledError):
        await task
    log = await store.read_events(run.id)
    assert [e.type for e in log if e.step == 1] == ["model.call"]  # nothing partial
    model_server.chunk_delay_s = 0.0
    async with Runtime(store) as rt:
        result = await rt.resume(run.id)
    assert (result.status, result.output) == ("succeeded", ANSWER)
    assert results(await store.read_events(run.id))[1].data["content"] == ANSWER
    assert streamed(model_server) == [True, False]
