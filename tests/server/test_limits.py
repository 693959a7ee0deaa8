"""The operator's limits on requests: a key over its rate gets 429 with Retry-After,
and the other keys are not slowed by it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from agentrt.models.testserver import ModelTestServer
from tests.server.harness import Api, Served, start_serve


@pytest.fixture(scope="module")
def slow_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server that lets each key make 2 requests a second (bursts of 4)."""
    tmp: Path = tmp_path_factory.mktemp("limits")
    model = ModelTestServer()
    model.start_in_thread()
    try:
        server = start_serve(f"sqlite:///{tmp / 'api.db'}", tmp, model, "--rate", "2")
        try:
            yield server
        finally:
            server.stop()
    finally:
        model.stop_thread()


async def test_a_key_over_its_rate_is_told_when_to_come_back(
    slow_served: Served, http: aiohttp.ClientSession
) -> None:
    busy = Api(slow_served, await slow_served.key("busy", "viewer"), http)
    quiet = Api(slow_served, await slow_served.key("quiet", "viewer"), http)
    replies = [await busy.call("GET", "/v1/runs") for _ in range(10)]
    statuses = [r.status for r in replies]
    assert statuses[:4] == [200] * 4, statuses  # the burst
    limited = [r for r in replies if r.status == 429]
    assert limited, statuses
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert limited[0].body["error"]["code"] == "rate_limited"
    # Another key is not held back by the busy one.
    assert (await quiet.call("GET", "/v1/runs")).status == 200
    # After the wait it asked for, the key is served again.
    await asyncio.sleep(int(limited[-1].headers["Retry-After"]))
    assert (await busy.call("GET", "/v1/runs")).status == 200


async def test_two_tenants_may_each_have_a_session_of_one_name(
    slow_served: Served, http: aiohttp.ClientSession
) -> None:
    from tests.conftest import rules
    from tests.server.conftest import agent_yaml

    slow_served.model.set_rules(rules({"content": "ok"}))
    owner = Api(slow_served, await slow_served.key("owner-tenant", "admin"), http)
    other = Api(slow_served, await slow_served.key("other-tenant", "admin"), http)
    for api in (owner, other):
        assert (await api.apply(agent_yaml(slow_served.model.url))).status == 200
    query = {"target": "bot", "input": "hi", "session": "shared-name", "wait": True}
    first = await owner.call("POST", "/v1/queries", json=query)
    second = await other.call("POST", "/v1/queries", json=query)
    assert first.status == second.status == 200, (first, second)
    # Each is the first turn of a session of its own, shown by the name its tenant gave.
    for reply in (first, second):
        assert reply.body["run"]["session"] == "shared-name"
        assert reply.body["run"]["turn"] == 0
    assert "owner-tenant" not in second.text
