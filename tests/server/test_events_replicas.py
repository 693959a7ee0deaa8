"""The issue's Streams check: two ``agentrt serve`` processes on one PostgreSQL. A client
reads half of a run's live stream from replica A, disconnects, and reconnects to replica
B with ``Last-Event-ID``: it gets every later event exactly once, in order, as the store
holds them; the model's reply pieces came before their step's result."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from agentrt.models.testserver import ModelTestServer
from agentrt.state import Store
from tests.conftest import call, rules
from tests.pg import admin as pg_admin
from tests.pg import fresh_schema, url_of
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served, start_serve
from tests.server.sse import Sse, deltas, durable, events

_TIMEOUT = aiohttp.ClientTimeout(total=60)
ANSWER = "eleven, and that is the whole of it, nothing more to add"


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    """Two servers over one fresh PostgreSQL schema, one model server behind both."""
    pg_admin().close()  # a loud skip without PostgreSQL (a failure under CI=true)
    model = ModelTestServer()
    model.start_in_thread()
    try:
        with fresh_schema() as schema:
            url = url_of(schema)
            first = start_serve(url, tmp_path, model)  # it makes the schema
            try:
                second = start_serve(url, tmp_path, model)
                try:
                    yield first, second
                finally:
                    second.stop()
            finally:
                first.stop()
    finally:
        model.stop_thread()


async def test_a_stream_resumed_on_another_replica_misses_and_repeats_nothing(
    replicas: tuple[Served, Served],
) -> None:
    a, b = replicas
    model = a.model
    model.set_rules(
        rules(
            {"tool_calls": [call("add", a=1, b=2)]},
            {"tool_calls": [call("add", a=3, b=4)]},
            {"tool_calls": [call("add", a=7, b=4)]},
            {"content": ANSWER},
        )
    )
    model.latency_s = 0.3  # each model step takes a while: the run is mid-way at the switch
    model.chunk_delay_s = 0.01
    model.inject_delay(0.5)  # the first step: the stream on A is open before the next one
    key = await a.key("acme", "admin")
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as http:
        on_a, on_b = Api(a, key, http), Api(b, key, http)
        assert (await on_a.apply(agent_yaml(model.url, tools=True))).status == 200
        submitted = await on_a.call("POST", "/v1/queries", json={"target": "bot", "input": "?"})
        assert submitted.status == 202, submitted
        run_id = submitted.body["run"]["id"]
        headers = {"Authorization": f"Bearer {key}"}
        path = f"/v1/runs/{run_id}/events"

        # Half of it from A: until a step streamed live has its result.
        first: list[Sse] = []
        async with http.get(a.base + path, headers=headers) as response:
            assert response.status == 200
            async for event in events(response):
                first.append(event)
                step = event.data["step"] if event.event == "model.result" else None
                if step is not None and any(d.data["step"] == step for d in deltas(first)):
                    break
        switched = time.time()
        still = await on_b.call("GET", f"/v1/runs/{run_id}")
        assert still.body["run"]["status"] == "running", "the run ended before the switch"

        # The rest from B, after the last event A sent.
        last_id = durable(first)[-1].id
        assert last_id is not None
        second: list[Sse] = []
        async with http.get(b.base + path, headers={**headers, "Last-Event-ID": last_id}) as r:
            assert r.status == 200
            second = [event async for event in events(r)]

    async with Store.from_url(a.store_url) as store:
        log = await store.read_events(run_id)
    got = durable(first) + durable(second)
    assert [int(e.id or 0) for e in got] == [e.seq for e in log] == list(range(1, len(log) + 1))
    assert [(e.event, e.data["step"], e.data["data"]) for e in got] == [
        (e.type, e.step, e.data) for e in log
    ]
    assert got[-1].event == "run.finished" and got[-1].data["data"]["status"] == "succeeded"
    assert got[-1].data["data"]["output"] == ANSWER
    # B streamed events A wrote after the client moved over, as they were written.
    assert any(e.data["ts"] > switched for e in durable(second))

    # On A, which executes the run, the streamed step's pieces came before its result
    # and make it whole; B, which does not, has the durable events only.
    result = first[-1]
    pieces = [d for d in deltas(first) if d.data["step"] == result.data["step"]]
    assert pieces and all(first.index(d) < first.index(result) for d in pieces)
    fragments = [f for d in pieces for f in d.data.get("tool_calls", ())]
    [(call_id, name, arguments)] = result.data["data"]["calls"]
    assert "".join(f.get("arguments", "") for f in fragments) == arguments
    assert [(f["id"], f["name"]) for f in fragments if "id" in f] == [(call_id, name)]
    assert not deltas(second)
