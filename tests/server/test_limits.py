"""The operator's limits on requests: a key over its rate gets 429 with Retry-After,
and the other keys are not slowed by it; a body that stalls gets 408."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from agentrt.models.testserver import ModelTestServer
from tests.server.harness import Api, Served, start_serve


@pytest.fixture(scope="module")
def slow_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server that lets each key make 2 requests a second (bursts of 4), and waits at
    most 1 s for the next part of a request body of at most 4 KiB."""
    tmp: Path = tmp_path_factory.mktemp("limits")
    model = ModelTestServer()
    model.start_in_thread()
    try:
        server = start_serve(
            f"sqlite:///{tmp / 'api.db'}",
            tmp,
            model,
            "--rate",
            "2",
            "--body-timeout",
            "1",
            "--max-body",
            "4096",
        )
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


async def test_a_body_that_stalls_is_refused_and_holds_nothing(slow_served: Served) -> None:
    """Half a body, then silence: 408 once the body timeout passes, not a hung handler;
    the server serves others meanwhile."""
    key = await slow_served.key("stalls", "user")
    host, port = slow_served.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST /v1/queries HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    writer.write(head.encode() + b'{"target": "bo')
    await writer.drain()
    answer = b""
    try:
        async with asyncio.timeout(10):
            # The head and the body may come in separate reads: read until both did.
            while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < int(
                answer.lower().partition(b"content-length: ")[2].split(b"\r\n")[0] or 0
            ):
                chunk = await reader.read(4096)
                assert chunk, answer
                answer += chunk
    finally:
        writer.close()
    status_line, _, rest = answer.decode().partition("\r\n")
    assert status_line.split()[1] == "408", answer
    assert "stalled" in rest


async def test_a_body_sent_in_chunks_past_the_limit_is_413(
    slow_served: Served, http: aiohttp.ClientSession
) -> None:
    """With no Content-Length to refuse up front, the count of what arrives still stops
    it: 413, never the 400 of a body the framework failed to read."""
    key = await slow_served.key("chunks", "user")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"target": "bot", "input": "'
        for _ in range(10):
            yield b"x" * 1024

    async with http.post(
        f"{slow_served.base}/v1/queries", data=chunks(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    ) as reply:  # fmt: skip
        assert reply.status == 413, await reply.text()
        assert "4096 bytes" in (await reply.json())["error"]["message"]
