"""A run's live stream over real HTTP, from one ``agentrt serve`` on SQLite: the log's
events with their sequence numbers as ids, resumed after any of them, the model's reply
piece by piece before its step's result, and nothing of another tenant's runs."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentrt.engine import Runtime
from tests.conftest import call, rules
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served, start_serve
from tests.server.sse import Sse, deltas, durable, events

ANSWER = "two and three make five, as every child knows by heart"
_TIMEOUT = aiohttp.ClientTimeout(total=60)


async def stream(
    api: Api, run_id: str, query: str = "", headers: dict[str, str] | None = None
) -> tuple[int, list[Sse], Any]:
    """Read a run's whole stream: the status, the events, and the body of a refusal."""
    sent = {"Authorization": f"Bearer {api.key}", **(headers or {})}
    url = f"{api.served.base}/v1/runs/{run_id}/events{query}"
    async with api.http.get(url, headers=sent, timeout=_TIMEOUT) as response:
        if response.status != 200:
            return response.status, [], await response.json()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return 200, [e async for e in events(response)], None


async def stored_log(api: Api, run_id: str) -> list[dict[str, Any]]:
    """The run's events as the store holds them (through the read model)."""
    reply = await api.call("GET", f"/v1/runs/{run_id}")
    assert reply.status == 200, reply
    events_: list[dict[str, Any]] = reply.body["events"]
    return events_


async def submit(api: Api, text: str, **extra: Any) -> str:
    """Start a run of ``bot`` in the background; its id."""
    reply = await api.call("POST", "/v1/queries", json={"target": "bot", "input": text, **extra})
    assert reply.status in (200, 202), reply
    run_id: str = reply.body["run"]["id"]
    return run_id


def asked_with(served: Served, text: str) -> list[dict[str, Any]]:
    """The model requests of the run whose input was ``text``."""
    return [
        r
        for r in served.model.requests
        if any(m.get("content") == text for m in r.get("messages", ()) if m["role"] == "user")
    ]


async def test_a_runs_stream_is_its_log_with_the_models_reply_live(
    served: Served, admin: Api
) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": ANSWER}))
    assert (await admin.apply(agent_yaml(served.model.url, tools=True))).status == 200
    served.model.inject_delay(0.5)  # the first step: the stream is open before the next one
    served.model.chunk_delay_s = 0.01
    try:
        text = f"2+3? {secrets.token_hex(3)}"
        run_id = await submit(admin, text)
        status, seen, _ = await stream(admin, run_id)
    finally:
        served.model.chunk_delay_s = 0.0
    assert status == 200
    log = await stored_log(admin, run_id)
    logged = durable(seen)
    # Every event of the log exactly once, in order, as the read model shows it.
    assert (
        [int(e.id or 0) for e in logged] == [e["seq"] for e in log] == list(range(1, len(log) + 1))
    )
    assert [e.event for e in logged] == [e["type"] for e in log]
    assert [e.data for e in logged] == log
    assert logged[-1].event == "run.finished" and logged[-1].data["data"]["status"] == "succeeded"
    # The answer's step streamed: its pieces, without ids, make its recorded reply and
    # come before its result.
    result = next(e for e in logged if e.event == "model.result" and e.data["data"].get("content"))
    step = result.data["step"]
    pieces = [d for d in deltas(seen) if d.data["step"] == step]
    assert len(pieces) > 3 and all(d.id is None for d in pieces)
    assert "".join(d.data["text"] for d in pieces) == result.data["data"]["content"] == ANSWER
    assert {(d.data["run"], d.data["attempt"], d.data["model"]) for d in pieces} == {
        (run_id, 1, "m")
    }
    assert seen.index(pieces[-1]) < seen.index(result)
    # Each piece comes right after the event it names, the last the run wrote before it:
    # the step's own call (written when the step began, so that listeners see it first).
    for index, piece in enumerate(seen):
        if piece.id is None:
            before = durable(seen[:index])[-1]
            assert int(before.id or 0) == piece.data["after"], piece
    call_event = next(e for e in logged if e.event == "model.call" and e.data["step"] == step)
    assert {d.data["after"] for d in pieces} == {int(call_event.id or 0)}
    last_request = asked_with(served, text)[-1]
    assert last_request["stream"] is True
    assert last_request["stream_options"] == {"include_usage": True}
    # Its usage is the one the server sent in the stream's last chunk, recorded whole.
    assert result.data["data"]["out"] > 0


async def test_a_finished_runs_stream_replays_its_log_and_ends(served: Served, admin: Api) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=1, b=1)]}, {"content": "2"}))
    assert (await admin.apply(agent_yaml(served.model.url, tools=True))).status == 200
    text = f"1+1? {secrets.token_hex(3)}"
    run_id = await submit(admin, text, wait=True)
    log = await stored_log(admin, run_id)
    assert log[-1]["type"] == "run.finished"
    status, seen, _ = await stream(admin, run_id)
    assert status == 200 and [e.data for e in seen] == log
    assert not deltas(seen)
    # Nobody listened while it ran: the model was never asked to stream.
    assert asked_with(served, text) and not any(r.get("stream") for r in asked_with(served, text))
    # Resumed after any event: the header, else the query; the header wins.
    middle = len(log) // 2
    for query, headers in (
        ("", {"Last-Event-ID": str(middle)}),
        (f"?after={middle}", {}),
        ("?after=1", {"Last-Event-ID": str(middle)}),
    ):
        status, seen, _ = await stream(admin, run_id, query, headers)
        assert status == 200 and [e.data for e in seen] == log[middle:], (query, headers)
    status, seen, _ = await stream(admin, run_id, headers={"Last-Event-ID": str(len(log))})
    assert status == 200 and seen == []


async def test_a_stream_names_only_events_the_log_can_have(served: Served, admin: Api) -> None:
    served.model.set_rules(rules({"content": "ok"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    run_id = await submit(admin, "hi", wait=True)
    last = len(await stored_log(admin, run_id))
    for query, headers in (
        ("", {"Last-Event-ID": "seven"}),
        ("", {"Last-Event-ID": str(last + 1)}),
        ("?after=-1", {}),
        ("?after=x", {}),
    ):
        status, _, body = await stream(admin, run_id, query, headers)
        assert 400 <= status < 500 and body["error"]["message"], (query, headers, body)


async def test_another_tenants_run_has_no_stream(
    served: Served, admin: Api, tenant: str, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(rules({"content": "mine"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    run_id = await submit(admin, "x", wait=True)
    other = Api(served, await served.key(f"other-{tenant}", "admin"), http)
    for api in (other, Api(served, None, http)):
        status, seen, body = await stream(api, run_id)
        assert status in (401, 404) and seen == [] and run_id not in str(body), body
    assert (await stream(other, run_id))[0] == 404
    status, _, body = await stream(other, "no-such-run")
    assert status == 404
    # A viewer of the run's own tenant may watch it.
    viewer = Api(served, await served.key(tenant, "viewer"), http)
    assert (await stream(viewer, run_id))[0] == 200


@pytest.fixture
def quick_beats(tmp_path: Path) -> Iterator[Served]:
    """A server of its own whose quiet streams say they are alive every 0.2 s."""
    from agentrt.models.testserver import ModelTestServer

    model = ModelTestServer()
    model.start_in_thread()
    try:
        server = start_serve(f"sqlite:///{tmp_path / 'beats.db'}", tmp_path, model,
                             "--heartbeat", "0.2")  # fmt: skip
        try:
            yield server
        finally:
            server.stop()
    finally:
        model.stop_thread()


APPROVED = """apiVersion: agentrt.dev/v1
kind: Model
metadata: {name: m}
spec: {provider: openai, base_url: 'URL', max_retries: 0}
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: charge}
spec:
  kind: python
  callable: 'tests.sample_tools:charge'
  approval: {required: true}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: bot}
spec: {model: m, tools: [charge]}
"""


async def test_a_waiting_runs_stream_stays_open_until_the_run_ends(
    quick_beats: Served, tenant: str, http: aiohttp.ClientSession
) -> None:
    served = quick_beats
    served.model.set_rules(rules({"tool_calls": [call("charge", amount=500)]}, {"content": "ok"}))
    api = Api(served, await served.key(tenant), http)
    assert (await api.apply(APPROVED.replace("URL", served.model.url))).status == 200
    run_id = await submit(api, "charge me")
    seen: list[Sse] = []
    quiet = asyncio.Event()

    async def read() -> None:
        sent = {"Authorization": f"Bearer {api.key}"}
        url = f"{served.base}/v1/runs/{run_id}/events"
        async with http.get(url, headers=sent, timeout=_TIMEOUT) as response:
            async for event in events(response):
                seen.append(event)
                waiting = any(e.event == "run.waiting" for e in seen)
                if waiting and sum(len(e.comments) for e in seen) >= 3:
                    quiet.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(quiet.wait(), 30)
    assert not reader.done(), "the stream of a waiting run ended"
    beats = [c for e in seen for c in e.comments]
    assert set(beats) == {"keep-alive"}
    # Another process ends the run: the stream sends its end and closes.
    async with Runtime(served.store_url, resume_interrupted=False) as rt:
        await rt.cancel(run_id)
    await asyncio.wait_for(reader, 30)
    assert durable(seen)[-1].event == "run.finished"
    assert durable(seen)[-1].data["data"]["status"] == "cancelled"
    assert [e.data for e in durable(seen)] == await stored_log(api, run_id)


async def test_a_server_stopping_ends_its_open_streams(
    quick_beats: Served, tenant: str, http: aiohttp.ClientSession
) -> None:
    served = quick_beats
    served.model.set_rules(rules({"tool_calls": [call("charge", amount=500)]}, {"content": "ok"}))
    api = Api(served, await served.key(tenant), http)
    assert (await api.apply(APPROVED.replace("URL", served.model.url))).status == 200
    run_id = await submit(api, "charge me")
    sent = {"Authorization": f"Bearer {api.key}"}
    url = f"{served.base}/v1/runs/{run_id}/events"
    async with http.get(url, headers=sent, timeout=_TIMEOUT) as response:
        seen: list[Sse] = []
        async for event in events(response):
            seen.append(event)
            if event.event == "run.waiting":
                break
        loop = asyncio.get_running_loop()
        started = loop.time()
        # SIGTERM: the stream ends at once (the client goes to another replica), and the
        # server does not wait out its grace period for it.
        stopping = loop.run_in_executor(None, served.stop)
        rest = [e async for e in events(response)]
        assert all(e.id is None for e in rest)
        assert await stopping == 0
        assert loop.time() - started < 5


async def test_many_streams_of_one_run_each_get_its_whole_log_exactly_once(
    served: Served, admin: Api
) -> None:
    served.model.set_rules(
        rules(*({"tool_calls": [call("add", a=i, b=1)]} for i in range(4)), {"content": "done"})
    )
    assert (await admin.apply(agent_yaml(served.model.url, tools=True))).status == 200
    served.model.inject_delay(1.0)  # the first step: every stream is open before the rest
    run_id = await submit(admin, f"count {secrets.token_hex(3)}")
    early = [asyncio.create_task(stream(admin, run_id)) for _ in range(30)]
    await asyncio.sleep(0.5)
    # Others join mid-way, resuming after the first event as a reconnect would.
    late = [
        asyncio.create_task(stream(admin, run_id, headers={"Last-Event-ID": "1"}))
        for _ in range(10)
    ]
    results = await asyncio.gather(*early, *late)
    log = await stored_log(admin, run_id)
    assert log[-1]["type"] == "run.finished" and len(log) > 10
    for index, (status, seen, _) in enumerate(results):
        want = log if index < len(early) else log[1:]
        assert status == 200
        assert [e.data for e in durable(seen)] == want, index
        assert [int(e.id or 0) for e in durable(seen)] == [e["seq"] for e in want]
