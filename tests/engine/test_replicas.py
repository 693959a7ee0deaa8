"""A Model served by three replica endpoints (three test model servers, over real
HTTP): every step of a session goes to one replica; a stopped replica moves its
sessions to one other replica, where they stay (after it comes back, and in a new
process); many sessions spread within the bounded-load factor; each step records
its replica and a replay asks no model."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.state import Store
from agentrt.state.circuits import circuit_key
from tests.conftest import call, resources, rules

SCRIPT = rules({"tool_calls": [call("add", a=1, b=2)]}, {"content": "sum {last_tool_result}"})
LOOP = {"retry": {"max_attempts": 3}}


@pytest.fixture
async def replicas() -> AsyncIterator[list[ModelTestServer]]:
    """Three servers of one model."""
    servers = [ModelTestServer(SCRIPT) for _ in range(3)]
    for server in servers:
        await server.start()
    try:
        yield servers
    finally:
        for server in servers:
            await server.stop()


def _resources(
    servers: list[ModelTestServer], circuit: dict[str, Any] | None = None, **affinity: Any
) -> list[Any]:
    model: dict[str, Any] = {"replicas": [s.url for s in servers[1:]]}
    if circuit is not None:
        model["circuit"] = circuit
    if affinity:
        model["affinity"] = affinity
    return resources(servers[0].url, tools=["add"], model=model, agent={"loop": LOOP})


def _served(servers: list[ModelTestServer]) -> list[int]:
    return [len([r for r in s.requests if r["_status"] == 200]) for s in servers]


async def _replicas_of(store: Store, run_id: str) -> list[str]:
    events = await store.read_events(run_id)
    return [e.data["replica"] for e in events if e.type == ev.MODEL_RESULT]


async def test_every_step_of_a_session_goes_to_one_replica(
    any_store: Store, replicas: list[ModelTestServer]
) -> None:
    async with Runtime(any_store) as rt:
        await rt.apply(_resources(replicas))
        runs = [await rt.run("bot", f"turn {i}", session="s") for i in range(4)]
        assert [r.output for r in runs] == ["sum 3"] * 4
        served = _served(replicas)
        assert sorted(served) == [0, 0, 8]  # 4 turns of 2 model steps, all on one replica
        used = replicas[served.index(8)].url
        for run in runs:
            assert await _replicas_of(any_store, run.run_id) == [used, used]
        for run in runs:  # a replay returns the recorded steps: no replica is asked
            assert (await rt.replay(run.run_id)).output == "sum 3"
        assert _served(replicas) == served


async def test_a_stopped_replica_moves_its_session_to_one_other_where_it_stays(
    any_store: Store, replicas: list[ModelTestServer]
) -> None:
    async with Runtime(any_store) as rt:
        await rt.apply(_resources(replicas, down_s=0.2))
        await rt.run("bot", "turn 0", session="s")
        first = next(i for i, n in enumerate(_served(replicas)) if n)
        gone = replicas[first].url
        port = gone.rsplit(":", 1)[1].split("/")[0]
        await replicas[first].stop()
        moved = [await rt.run("bot", f"turn {i}", session="s") for i in range(1, 4)]
        assert [r.status for r in moved] == ["succeeded"] * 3
        served = _served(replicas)
        [second] = [i for i, n in enumerate(served) if n and i != first]
        assert served[second] == 6  # every step after the stop on the one it moved to
        events = await any_store.read_events(moved[0].run_id)
        [failed] = [e.data for e in events if e.type == ev.MODEL_ERROR]
        assert (failed["why"], failed["replica"]) == ("unreachable", gone)
        assert failed["retry_in"] == 0  # the next replica is asked at once
        # The stopped replica comes back: the session stays where it moved.
        replicas[first] = ModelTestServer(SCRIPT, port=int(port))
        await replicas[first].start()
        await asyncio.sleep(0.3)  # past down_s: it is up again
        await rt.run("bot", "turn 4", session="s")
        assert _served(replicas)[second] == 8 and _served(replicas)[first] == 0
    # A new process reads where the session's last turn went, and stays there too.
    async with Runtime(any_store) as rt:
        result = await rt.run("bot", "turn 5", session="s")
        assert await _replicas_of(any_store, result.run_id) == [replicas[second].url] * 2
    assert _served(replicas)[first] == 0


@pytest.mark.parametrize("load_factor", [1.0, 1.25])
async def test_many_sessions_spread_within_the_bounded_load_factor(
    store: Store, replicas: list[ModelTestServer], load_factor: float
) -> None:
    sessions = 48
    async with Runtime(store) as rt:
        await rt.apply(_resources(replicas, load_factor=load_factor))
        for i in range(sessions):
            await rt.run("bot", "hello", session=f"session-{i}")
        per_replica = [n // 2 for n in _served(replicas)]  # two model steps per session
        assert sum(per_replica) == sessions
        assert max(per_replica) <= math.ceil(load_factor * sessions / 3)
        assert min(per_replica) > 0
        # A second turn of every session goes where its first went.
        before = Counter(per_replica)
        for i in range(sessions):
            await rt.run("bot", "again", session=f"session-{i}")
        assert Counter(n // 4 for n in _served(replicas)) == before


async def test_without_stickiness_a_session_s_steps_go_to_each_replica_in_turn(
    store: Store, replicas: list[ModelTestServer]
) -> None:
    async with Runtime(store) as rt:
        await rt.apply(_resources(replicas, sticky=False))
        runs = [await rt.run("bot", f"turn {i}", session="s") for i in range(3)]
    assert _served(replicas) == [2, 2, 2]
    used = [url for run in runs for url in await _replicas_of(store, run.run_id)]
    assert used == [s.url for s in replicas] * 2


async def test_a_replica_whose_circuit_opens_moves_its_session(
    store: Store, replicas: list[ModelTestServer]
) -> None:
    async with Runtime(store) as rt:
        await rt.apply(_resources(replicas, circuit={"failures": 1, "open_s": 60}))
        await rt.run("bot", "turn 0", session="s")
        first = next(i for i, n in enumerate(_served(replicas)) if n)
        replicas[first].inject(500)
        result = await rt.run("bot", "turn 1", session="s")
        assert result.status == "succeeded"
        [second] = [i for i, n in enumerate(_served(replicas)) if n and i != first]
        circuit = await store.get_circuit(circuit_key("default", "m", replicas[first].url))
        assert circuit is not None and circuit.state == "open"
        other = await store.get_circuit(circuit_key("default", "m", replicas[second].url))
        assert other is None or other.state == "closed"
        await rt.run("bot", "turn 2", session="s")
        assert _served(replicas)[second] == 4 and _served(replicas)[first] == 2
        events = await store.read_events(result.run_id)
        [failed] = [e.data for e in events if e.type == ev.MODEL_ERROR]
        assert (failed["why"], failed["replica"]) == ("http_500", replicas[first].url)
