"""Double texting in the engine: what a query for a session with an unfinished turn does
under each policy (reject, enqueue, interrupt, rollback), the history each later turn
is given, and the conditional writes that keep two racing queries from losing a
message or running two turns at once, on one runtime or two."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.errors import SessionBusy
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore, Store
from tests.conftest import call, resources
from tests.pg import fresh_schema, url_of

INTERRUPTED = "not run: the turn was interrupted by a newer message"
# "slow ...": adds, then sleeps in a tool for 30 s; "brief ...": the same, for a second;
# "pay ...": a charge that waits for approval; anything else: "You said: ...".
RULES = [
    {
        "match": "^brief",
        "steps": [{"tool_calls": [call("sleep", seconds=1.0)]}, {"content": "rested"}],
    },
    {
        "match": "^slow",
        "steps": [
            {"tool_calls": [call("add", a=2, b=3)]},
            {"tool_calls": [call("sleep", seconds=30.0)]},
            {"content": "woke up"},
        ],
    },
    {
        "match": "^pay",
        "steps": [
            {"tool_calls": [call("charge_approved", amount=250)]},
            {"content": "{last_tool_result}"},
        ],
    },
]
TOOLS = ["add", "sleep", "charge_approved"]


@pytest.fixture(params=["sqlite", "postgresql"])
async def two(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, for two runtimes standing for two processes."""
    if request.param == "sqlite":
        first = await SqliteStore.open(tmp_path / "agentrt.db")
        second = await SqliteStore.open(tmp_path / "agentrt.db")
        try:
            yield first, second
        finally:
            await second.close()
            await first.close()
        return
    from agentrt.state import PostgresStore

    with fresh_schema() as schema:
        first = await PostgresStore.from_url(url_of(schema))
        second = await PostgresStore.from_url(url_of(schema))
        try:
            yield first, second
        finally:
            await second.close()
            await first.close()


def _script(server: ModelTestServer) -> None:
    from agentrt.spec import ScriptedRule

    server.set_rules([ScriptedRule.model_validate(r) for r in RULES])


async def _until(check: Callable[[], Any], timeout: float = 20.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _in_tool(store: Store, run_id: str, name: str) -> None:
    """Return once the run has started a call of tool ``name``."""

    async def started() -> bool:
        events = await store.read_events(run_id)
        return any(e.type == ev.TOOL_CALL and e.data.get("name") == name for e in events)

    await _until(started)


def _prompt(server: ModelTestServer, user: str) -> list[tuple[str, str]]:
    """The first prompt whose last user message is ``user``: (role, content) pairs."""
    for request in server.requests:
        messages = request["messages"]
        users = [m for m in messages if m["role"] == "user"]
        if users and users[-1]["content"] == user:
            return [(m["role"], str(m.get("content") or "")) for m in messages[1:]]
    raise AssertionError(f"no request for {user!r}")


def _users(prompt: list[tuple[str, str]]) -> list[str]:
    return [content for role, content in prompt if role == "user"]


async def test_reject_refuses_a_busy_session_and_creates_nothing(
    store: SqliteStore, model_server: ModelTestServer, effects: object
) -> None:
    _script(model_server)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=TOOLS))
        first = await rt.submit("bot", "brief one", session="s")
        await _in_tool(store, first.id, "sleep")
        with pytest.raises(SessionBusy):
            await rt.submit("bot", "refused", session="s", double_texting="reject")
        assert [r.id for r in await store.list_runs(session_id="s")] == [first.id]
        assert (await rt.session("s")).state == "busy"
        assert (await rt.wait(first.id)).status == "succeeded"
        # Idle again: the same policy lets the query in, and it sees the first turn.
        second = await rt.run("bot", "accepted", session="s", double_texting="reject")
    assert second.status == "succeeded"
    assert _users(_prompt(model_server, "accepted")) == ["brief one", "accepted"]
    assert all("refused" not in str(r["messages"]) for r in model_server.requests)


async def test_two_rejecting_queries_racing_on_an_idle_session_start_one_turn(
    model_server: ModelTestServer, two: tuple[Store, Store], tmp_path: Path
) -> None:
    _script(model_server)
    one, other = two
    async with (
        Runtime(one, scratch_root=tmp_path / "a") as a,
        Runtime(other, scratch_root=tmp_path / "b") as b,
    ):
        await a.apply(resources(model_server.url, tools=TOOLS))
        tries = [
            rt.submit("bot", f"brief {i}", session="s", double_texting="reject")
            for i, rt in enumerate([a, b, a, b, a, b])
        ]
        results = await asyncio.gather(*tries, return_exceptions=True)
        started = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, SessionBusy)]
        assert len(started) == 1 and len(refused) == 5, results
        assert (await a.wait(started[0].id)).status == "succeeded"
    assert [r.id for r in await one.list_runs(session_id="s")] == [started[0].id]


async def test_enqueue_waits_for_a_person_then_runs_after_the_decided_turn(
    store: SqliteStore, model_server: ModelTestServer, effects: object
) -> None:
    _script(model_server)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=TOOLS))
        asking = await rt.run("bot", "pay the invoice", session="s")
        assert asking.status == "waiting_approval"
        later = await rt.submit("bot", "and then?", session="s")  # enqueue, the default
        await asyncio.sleep(0.5)  # time for a turn that did not wait to ask the model
        assert all("and then?" not in str(r["messages"]) for r in model_server.requests)
        assert (await rt.session("s")).state == "waiting"
        step = next(
            e.step
            for e in await store.read_events(asking.run_id)
            if e.type == ev.APPROVAL_REQUESTED
        )
        assert step is not None
        approved = await rt.approve(asking.run_id, step, by="ana")
        after = await asyncio.wait_for(rt.wait(later.id), 30)
        view = await rt.session("s")
    assert (approved.status, approved.output) == ("succeeded", "charged 250")
    assert (after.status, after.output) == ("succeeded", "You said: and then?")
    prompt = _prompt(model_server, "and then?")
    assert ("tool", "charged 250") in prompt and ("assistant", "charged 250") in prompt
    assert view.state == "idle" and [t.in_history for t in view.turns] == [True, True]


@pytest.mark.parametrize("policy", ["interrupt", "rollback"])
async def test_a_superseding_turn_cancels_the_running_one_and_sets_the_history(
    store: SqliteStore, model_server: ModelTestServer, effects: object, policy: str
) -> None:
    _script(model_server)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=TOOLS))
        first = await rt.submit("bot", "slow first", session="s")
        await _in_tool(store, first.id, "sleep")
        second = await rt.run("bot", "second", session="s", double_texting=policy)  # type: ignore[arg-type]
        third = await rt.run("bot", "third", session="s")
        view = await rt.session("s")
        cut = await store.get_run(first.id)
        cut_log = await store.read_events(first.id)
    # Cancelled in its sleep, not waited for: the call has no result.
    assert [e.data.get("output") for e in cut_log if e.type == ev.TOOL_RESULT] == ["5"]
    assert second.status == third.status == "succeeded"
    assert cut is not None and cut.status == "cancelled" and cut.cancel_cause == policy
    kept = [
        ("user", "slow first"),
        ("assistant", ""),
        ("tool", "5"),
        ("assistant", ""),
        ("tool", INTERRUPTED),
    ]
    before = kept if policy == "interrupt" else []
    assert _prompt(model_server, "second") == [*before, ("user", "second")]
    assert _prompt(model_server, "third") == [
        *before, ("user", "second"), ("assistant", "You said: second"), ("user", "third"),
    ]  # fmt: skip
    assert [t.in_history for t in view.turns] == [policy == "interrupt", True, True]


@pytest.mark.parametrize("policy", ["interrupt", "rollback"])
async def test_a_superseding_turn_cancels_a_turn_waiting_for_approval(
    store: SqliteStore, model_server: ModelTestServer, effects: Any, policy: str
) -> None:
    _script(model_server)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=TOOLS))
        asking = await rt.run("bot", "pay now", session="s")
        assert asking.status == "waiting_approval"
        second = await rt.run("bot", "never mind", session="s", double_texting=policy)  # type: ignore[arg-type]
        cut = await store.get_run(asking.run_id)
    assert second.status == "succeeded"
    assert cut is not None and cut.status == "cancelled" and cut.cancel_cause == policy
    assert not effects.exists(), "the charge waiting for approval never ran"
    kept = [("user", "pay now"), ("assistant", ""), ("tool", INTERRUPTED)]
    assert _prompt(model_server, "never mind") == [
        *(kept if policy == "interrupt" else []), ("user", "never mind"),
    ]  # fmt: skip


async def test_a_turn_on_another_worker_is_interrupted_through_the_store(
    model_server: ModelTestServer, two: tuple[Store, Store], tmp_path: Path
) -> None:
    _script(model_server)
    one, other = two
    async with (
        Runtime(one, scratch_root=tmp_path / "a") as a,
        Runtime(other, scratch_root=tmp_path / "b") as b,
    ):
        await a.apply(resources(model_server.url, tools=TOOLS))
        first = await a.submit("bot", "slow on a", session="s")
        await _in_tool(one, first.id, "sleep")
        second = await asyncio.wait_for(
            b.run("bot", "from b", session="s", double_texting="interrupt"), 20
        )
        cut = await one.get_run(first.id)
    assert second.status == "succeeded"
    assert cut is not None and (cut.status, cut.cancel_cause) == ("cancelled", "interrupt")
    assert _users(_prompt(model_server, "from b")) == ["slow on a", "from b"]


async def test_racing_interrupts_lose_no_message_and_never_run_two_turns_at_once(
    model_server: ModelTestServer, two: tuple[Store, Store], tmp_path: Path
) -> None:
    _script(model_server)
    one, other = two
    async with (
        Runtime(one, scratch_root=tmp_path / "a") as a,
        Runtime(other, scratch_root=tmp_path / "b") as b,
    ):
        await a.apply(resources(model_server.url, tools=TOOLS))
        first = await a.submit("bot", "slow start", session="s")
        await _in_tool(one, first.id, "sleep")
        runs = await asyncio.gather(
            *(
                rt.submit("bot", f"brief {i}", session="s", double_texting="interrupt")
                for i, rt in enumerate([a, b, a, b])
            )
        )
        last = max(runs, key=lambda r: r.turn or 0)
        done = await asyncio.wait_for(a.wait(last.id), 30)
        turns = await one.list_runs(session_id="s")
        spans = []
        for run in turns:
            events = await one.read_events(run.id)
            begun = [e.ts for e in events if e.type == ev.RUN_STARTED]
            if begun:
                spans.append((begun[0], events[-1].ts))
    assert done.status == "succeeded"
    assert [r.turn for r in turns] == [0, 1, 2, 3, 4]
    # Each earlier turn was cut off by the next one, unless it had already ended when
    # the next one arrived (the brief turns make that rare, not impossible).
    for turn, following in itertools.pairwise(turns):
        cut = (turn.status, turn.cancel_cause) == ("cancelled", "interrupt")
        ended_first = turn.status == "succeeded" and turn.updated_at <= following.created_at
        assert cut or ended_first, (turn.status, turn.cancel_cause)
    # Every message reached the last turn, in order: each cut-off turn kept its record.
    asked = {r.id: f"brief {i}" for i, r in enumerate(runs)}
    inputs = ["slow start", *(asked[r.id] for r in turns[1:])]
    assert _users(_prompt(model_server, inputs[-1])) == inputs
    spans.sort()
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), spans


async def test_the_queries_policy_wins_over_the_agents(
    store: SqliteStore, model_server: ModelTestServer, effects: object
) -> None:
    _script(model_server)
    async with Runtime(store) as rt:
        agent = {"session": {"double_texting": "reject"}}
        await rt.apply(resources(model_server.url, tools=TOOLS, agent=agent))
        first = await rt.submit("bot", "brief turn", session="s")
        await _in_tool(store, first.id, "sleep")
        with pytest.raises(SessionBusy):
            await rt.submit("bot", "by the agent's policy", session="s")
        queued = await rt.submit("bot", "by the query's", session="s", double_texting="enqueue")
        result = await asyncio.wait_for(rt.wait(queued.id), 30)
    assert result.status == "succeeded"
    assert _users(_prompt(model_server, "by the query's")) == ["brief turn", "by the query's"]
    created = (await store.read_events(queued.id))[0].data
    assert created["double_texting"] == "enqueue"


async def test_a_session_is_listed_read_and_deleted_with_its_turns(
    store: SqliteStore, model_server: ModelTestServer, effects: object
) -> None:
    _script(model_server)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=TOOLS))
        await rt.run("bot", "hello", session="s")
        running = await rt.submit("bot", "brief again", session="s")
        await _in_tool(store, running.id, "sleep")
        listed = {v.id: v.state for v in await rt.sessions(namespace="default")}
        with pytest.raises(SessionBusy):
            await rt.delete_session("s")
        await rt.wait(running.id)
        view = await rt.session("s")
        deleted = await rt.delete_session("s")
        assert await rt.sessions() == []
    assert listed == {"s": "busy"}
    assert [(t.run.turn, t.output) for t in view.turns] == [(0, "You said: hello"), (1, "rested")]
    assert sorted(deleted) == sorted(t.run.id for t in view.turns)
    assert await store.list_runs() == []
