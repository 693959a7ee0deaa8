"""Queries a server takes go through its scheduler: with ``--concurrency 2``, tenant A
floods the server through the API, then tenant B sends a few; B's start within what
its half of the slots takes, while most of A's backlog still waits, and A's are
never more than the slots at once (from the runs' recorded times)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import pytest

from agentrt.engine import events as ev
from tests.conftest import most_at_once, rules
from tests.server.conftest import agent_yaml, serving
from tests.server.harness import Api, Served

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_slots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``agentrt serve --concurrency 2``."""
    with serving(tmp_path_factory, "--concurrency", "2") as server:
        yield server


async def _post(api: Api, text: str) -> str:
    reply = await api.call("POST", "/v1/queries", json={"target": "bot", "input": text})
    assert reply.status == 202, reply
    return str(reply.body["run"]["id"])


async def _span(api: Api, run_id: str) -> tuple[float, float, float] | None:
    """The run's creation, start and end, once it has ended."""
    body = (await api.call("GET", f"/v1/runs/{run_id}")).body
    times = {e["type"]: e["ts"] for e in body["events"]}
    if ev.RUN_FINISHED not in times:
        return None
    return body["run"]["created_at"], times[ev.RUN_STARTED], times[ev.RUN_FINISHED]


async def test_a_tenant_after_a_flood_of_queries_is_served_at_once(two_slots: Served) -> None:
    two_slots.model.set_rules(rules({"content": "done"}))
    two_slots.model.latency_s = 0.5  # a's flood outruns the slots
    async with aiohttp.ClientSession() as http:
        a = Api(two_slots, await two_slots.key("flood-a", "admin"), http)
        b = Api(two_slots, await two_slots.key("late-b", "admin"), http)
        for api in (a, b):
            assert (await api.apply(agent_yaml(two_slots.model.url))).status == 200
        flood = [await _post(a, f"a{i}") for i in range(80)]
        late = [await _post(b, f"b{i}") for i in range(6)]
        deadline = time.monotonic() + 60
        spans: dict[str, tuple[float, float, float]] = {}
        while len(spans) < len(late):
            assert time.monotonic() < deadline, f"b's queries did not end: {spans}"
            for run_id in late:
                if run_id not in spans and (span := await _span(b, run_id)) is not None:
                    spans[run_id] = span
            await asyncio.sleep(0.1)
        a_done = [s for run_id in flood if (s := await _span(a, run_id)) is not None]
    waits = [started - created for created, started, _ in spans.values()]
    # One slot is b's while it has work: 6 runs of about 0.5 s, with room for a slow
    # machine; first-come would have them wait for the 80 of a's before them (20 s).
    assert max(waits) < 8.0, waits
    assert len(a_done) < 50, "b was served after most of a's backlog"
    assert most_at_once([(s, e) for _, s, e in a_done]) <= 2
