"""A2A over real HTTP: the official A2A SDK's client (and raw JSON-RPC, and the SDK's
0.3 client) against a real ``agentrt serve``; every task is a run of the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError, UnsupportedOperationError

from agentrt import _json
from agentrt.state import Store
from tests.conftest import call, rules
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served, start_serve

GATED = (
    "---\napiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: guarded}\n"
    "spec: {kind: python, callable: 'tests.sample_tools:add', approval: {required: true}}\n"
    "---\napiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: gate}\n"
    "spec: {model: m, tools: [guarded]}\n"
)


@asynccontextmanager
async def sdk(
    served: Served, key: str | None, agent: str = "bot", *, streaming: bool = True
) -> AsyncIterator[tuple[Client, AgentCard]]:
    """The official client for an Agent, made from its card as any A2A client makes it."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        card = await A2ACardResolver(http, f"{served.base}/a2a/{agent}").get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)
        try:
            yield client, card
        finally:
            await client.close()


def message(text: str, message_id: str, **fields: Any) -> SendMessageRequest:
    """A user's text message."""
    sent = Message(message_id=message_id, role=Role.ROLE_USER, parts=[Part(text=text)], **fields)
    return SendMessageRequest(message=sent)


async def rpc(api: Api, agent: str, method: str, params: Any, **headers: str) -> Any:
    """One raw JSON-RPC call; the parsed response."""
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    reply = await api.call("POST", f"/a2a/{agent}/", json=body, headers=headers)
    assert reply.status == 200, reply
    assert reply.body["id"] == 7 and reply.body["jsonrpc"] == "2.0"
    return reply.body


async def sse(api: Api, agent: str, method: str, params: Any) -> list[tuple[int, Any]]:
    """A raw streaming call: each SSE frame's (id, JSON-RPC response)."""
    body = {"jsonrpc": "2.0", "id": "s", "method": method, "params": params}
    headers = {"Authorization": f"Bearer {api.key}", "Accept": "text/event-stream"}
    url = f"{api.served.base}/a2a/{agent}/"
    frames: list[tuple[int, Any]] = []
    async with api.http.post(url, data=_json.dumps(body), headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = (await response.read()).decode()
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            frames.append((int(lines["id"]), _json.loads(lines["data"])))
    return frames


async def frames_of(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[int, Any]]:
    """The SSE frames of a response as they arrive: (id, JSON-RPC response)."""
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line:
            if ": " in line and not line.startswith(":"):
                name, value = line.split(": ", 1)
                fields[name] = value
            continue
        if "data" in fields:
            yield int(fields["id"]), _json.loads(fields["data"])
        fields = {}


async def stored_events(served: Served, run_id: str) -> list[Any]:
    async with Store.from_url(served.store_url) as store:
        return await store.read_events(run_id)


async def answer(client: Client, request: SendMessageRequest) -> Task:
    """The task a client not streaming gets for a message: its one reply."""
    [reply] = [r async for r in client.send_message(request)]
    assert reply.HasField("task"), reply
    return reply.task


def kinds(events: list[StreamResponse]) -> list[str]:
    return [e.WhichOneof("payload") or "" for e in events]


async def test_the_card_names_the_endpoint_and_asks_for_an_api_key(
    served: Served, admin: Api, http: aiohttp.ClientSession
) -> None:
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    anonymous = await Api(served, None, http).call("GET", "/a2a/bot/.well-known/agent-card.json")
    assert anonymous.status == 401
    async with sdk(served, admin.key) as (_, card):
        assert card.name == "bot"
        first = card.supported_interfaces[0]
        assert (first.url, first.protocol_binding, first.protocol_version) == (
            f"{served.base}/a2a/bot/", "JSONRPC", "1.0",
        )  # fmt: skip
        assert [i.protocol_version for i in card.supported_interfaces] == ["1.0", "0.3"]
        assert card.capabilities.streaming and not card.capabilities.push_notifications
        scheme = card.security_schemes["agentrt-key"].http_auth_security_scheme
        assert scheme.scheme == "Bearer"
        assert "agentrt-key" in card.security_requirements[0].schemes
    # The tenant's only Agent is its card at the root too.
    root = await admin.call("GET", "/.well-known/agent-card.json")
    assert root.status == 200 and root.body["name"] == "bot", root
    missing = await admin.call("GET", "/a2a/nobody/.well-known/agent-card.json")
    assert missing.status == 404
    paths = (await admin.call("GET", "/v1/openapi.json")).body["paths"]
    assert {"/a2a/{agent}/", "/a2a/{agent}/.well-known/agent-card.json"} <= set(paths)
    assert "/.well-known/agent-card.json" in paths


async def test_the_root_card_is_the_labelled_agent_when_a_tenant_has_several(
    served: Served, admin: Api
) -> None:
    assert (await admin.apply(agent_yaml(served.model.url) + GATED)).status == 200
    several = await admin.call("GET", "/.well-known/agent-card.json")
    assert several.status == 404 and "2 Agents" in several.body["error"]["message"], several
    labelled = GATED.replace(
        "metadata: {name: gate}",
        "metadata: {name: gate, labels: {agentrt.dev/a2a-default: 'true'}}",
    )
    assert (await admin.apply(labelled)).status == 200
    root = await admin.call("GET", "/.well-known/agent-card.json")
    assert root.body["name"] == "gate"
    assert root.body["supportedInterfaces"][0]["url"] == f"{served.base}/a2a/gate/"


async def test_a_message_is_answered_with_the_task_of_one_run(served: Served, admin: Api) -> None:
    served.model.set_rules(rules({"content": "hello there"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    async with sdk(served, admin.key, streaming=False) as (client, _):
        replies = [r async for r in client.send_message(message("hi", "msg-1"))]
        assert kinds(replies) == ["task"]
        task = replies[0].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert [p.text for a in task.artifacts for p in a.parts] == ["hello there"]
        assert [(m.role, m.message_id, m.parts[0].text) for m in task.history] == [
            (Role.ROLE_USER, "msg-1", "hi"), (Role.ROLE_AGENT, f"{task.id}-answer", "hello there"),
        ]  # fmt: skip
        # The same message again is the same task: no second run.
        again = [r async for r in client.send_message(message("hi", "msg-1"))]
        assert again[0].task.id == task.id
    run = await admin.call("GET", f"/v1/runs/{task.id}")
    assert run.status == 200 and run.body["run"]["agent"] == "bot"
    assert run.body["run"]["session"] == task.context_id
    assert len((await admin.call("GET", "/v1/runs")).body["items"]) == 1


async def test_a_context_continues_the_session_of_the_first_message(
    served: Served, admin: Api
) -> None:
    served.model.set_rules(rules({"content": "first"}, match="one") + rules({"content": "second"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    async with sdk(served, admin.key, streaming=False) as (client, _):
        first = await answer(client, message("one", "m-a"))
        follow = message("two", "m-b", context_id=first.context_id)
        second = await answer(client, follow)
    assert second.context_id == first.context_id and second.id != first.id
    turns = await admin.call("GET", f"/v1/runs?session={first.context_id}")
    assert sorted(r["turn"] for r in turns.body["items"]) == [0, 1]  # newest first
    # The model saw the first turn in the second's prompt.
    prompt = served.model.requests[-1]["messages"]
    assert [m["content"] for m in prompt if m["role"] in ("user", "assistant")] == [
        "one", "first", "two",
    ]  # fmt: skip


async def test_a_streamed_task_follows_the_stored_event_log(served: Served, admin: Api) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": "5"}))
    assert (await admin.apply(agent_yaml(served.model.url, tools=True))).status == 200
    served.model.inject_delay(0.3)  # the stream begins before the task ends
    async with sdk(served, admin.key) as (client, _):
        events = [e async for e in client.send_message(message("2+3?", "msg-s"))]
    assert kinds(events)[0] == "task" and kinds(events)[-2:] == ["artifact_update", "status_update"]
    states = [e.status_update.status.state for e in events if e.HasField("status_update")]
    assert states[-1] == TaskState.TASK_STATE_COMPLETED
    assert TaskState.TASK_STATE_WORKING in [events[0].task.status.state, *states]
    assert events[-2].artifact_update.artifact.parts[0].text == "5"
    # Raw, each frame's SSE id is the sequence number of the event that made it.
    frames = await sse(admin, "bot", "SendStreamingMessage", {
        "message": {"messageId": "msg-s", "role": "ROLE_USER", "parts": [{"text": "2+3?"}]},
    })  # fmt: skip
    run_id = frames[0][1]["result"]["task"]["id"]
    assert run_id == events[0].task.id  # the same message: the same task, now ended
    log = await stored_events(served, run_id)
    assert [f[0] for f in frames] == [log[-1].seq]  # an ended task: its state, once
    assert frames[0][1]["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


async def test_a_stream_sends_each_change_at_its_event(served: Served, admin: Api) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=1, b=1)]}, {"content": "2"}))
    assert (await admin.apply(agent_yaml(served.model.url, tools=True))).status == 200
    served.model.inject_delay(0.3)  # the stream begins before the task ends
    frames = await sse(admin, "bot", "SendStreamingMessage", {
        "message": {"messageId": "fresh", "role": "ROLE_USER", "parts": [{"text": "1+1?"}]},
    })  # fmt: skip
    first = frames[0][1]["result"]["task"]
    log = {e.seq: e for e in await stored_events(served, first["id"])}
    ids = [seq for seq, _ in frames]
    assert ids == sorted(ids) and ids[-1] == max(log)
    last = frames[-1][1]["result"]["statusUpdate"]["status"]
    assert last["state"] == "TASK_STATE_COMPLETED" and len(frames) >= 3
    # Nothing is missed: a task that was submitted when the stream began shows it start.
    started = next(e.seq for e in log.values() if e.type == "run.started")
    updates = {seq: f["result"]["statusUpdate"]["status"]["state"] for seq, f in frames[1:]
               if "statusUpdate" in f["result"]}  # fmt: skip
    if first["status"]["state"] == "TASK_STATE_SUBMITTED":
        assert updates[started] == "TASK_STATE_WORKING"
    else:
        assert first["status"]["state"] == "TASK_STATE_WORKING" and frames[0][0] >= started
    for seq, frame in frames[1:]:
        result = frame["result"]
        if "statusUpdate" in result:
            state = result["statusUpdate"]["status"]["state"]
            expected = {"TASK_STATE_WORKING": "run.started", "TASK_STATE_COMPLETED": "run.finished"}
            assert log[seq].type == expected[state], (seq, state)
        else:
            assert log[seq].type == "run.finished"
            assert result["artifactUpdate"]["artifact"]["parts"] == [{"text": "2"}]


async def test_a_task_is_read_listed_subscribed_to_and_cancelled(
    served: Served, admin: Api
) -> None:
    served.model.set_rules(rules({"content": "late"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    served.model.inject_delay(60)
    try:
        async with sdk(served, admin.key) as (client, _):
            request = message("take your time", "slow")
            request.configuration.return_immediately = True
            async with sdk(served, admin.key, streaming=False) as (sender, _):
                task = await answer(sender, request)
            assert task.status.state in (
                TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING,
            )  # fmt: skip
            got = await client.get_task(GetTaskRequest(id=task.id))
            assert got.id == task.id and got.context_id == task.context_id
            listed = await client.list_tasks(ListTasksRequest())
            assert [t.id for t in listed.tasks] == [task.id] and listed.next_page_token == ""
            subscribed = client.subscribe(SubscribeToTaskRequest(id=task.id))
            followed = asyncio.create_task(_collect(subscribed))
            await asyncio.sleep(0.5)  # the subscription is open and waiting
            cancelled = await client.cancel_task(CancelTaskRequest(id=task.id))
            assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
            seen = await asyncio.wait_for(followed, 10)
            assert kinds(seen)[0] == "task"
            assert seen[-1].status_update.status.state == TaskState.TASK_STATE_CANCELED
            # Cancelling again is the same cancel (the protocol's cancel is idempotent).
            again = await client.cancel_task(CancelTaskRequest(id=task.id))
            assert again.status.state == TaskState.TASK_STATE_CANCELED
    finally:
        served.model.clear_injections()
    run = await admin.call("GET", f"/v1/runs/{task.id}")
    assert run.body["run"]["status"] == "cancelled"
    # A task that ended otherwise cannot be cancelled.
    async with sdk(served, admin.key, streaming=False) as (client, _):
        done = await answer(client, message("now", "quick"))
        assert done.status.state == TaskState.TASK_STATE_COMPLETED
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=done.id))


async def _collect(stream: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    return [event async for event in stream]


async def test_a_task_waiting_for_approval_needs_input(served: Served, admin: Api) -> None:
    served.model.set_rules(rules({"tool_calls": [call("guarded", a=1, b=2)]}, {"content": "3"}))
    assert (await admin.apply(agent_yaml(served.model.url) + GATED)).status == 200
    async with sdk(served, admin.key, agent="gate") as (client, _):
        events = [e async for e in client.send_message(message("add", "gated-1"))]
        last = events[-1].status_update.status
        assert last.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert "needs approval" in last.message.parts[0].text
        task_id = events[0].task.id
        listed = await client.list_tasks(
            ListTasksRequest(status=TaskState.TASK_STATE_INPUT_REQUIRED)
        )
        assert [t.id for t in listed.tasks] == [task_id]
        done = await client.list_tasks(ListTasksRequest(status=TaskState.TASK_STATE_COMPLETED))
        assert list(done.tasks) == []
        # A second message to the task is refused: a task takes one.
        with pytest.raises(UnsupportedOperationError, match="a task takes one message"):
            [e async for e in client.send_message(message("go on", "gated-2", task_id=task_id))]
        cancelled = await client.cancel_task(CancelTaskRequest(id=task_id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED


async def test_a_task_is_followed_from_the_log_on_another_replica(
    served: Served, admin: Api, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(rules({"tool_calls": [call("guarded", a=1, b=2)]}, {"content": "3"}))
    assert (await admin.apply(agent_yaml(served.model.url) + GATED)).status == 200
    text = {"messageId": "twice", "role": "ROLE_USER", "parts": [{"text": "add"}]}
    task = (await rpc(admin, "gate", "SendMessage", {"message": text}))["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
    second = start_serve(served.store_url, tmp_path, served.model)  # the same store
    try:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SubscribeToTask",
            "params": {"id": task["id"]},
        }
        headers = {"Authorization": f"Bearer {admin.key}", "Content-Type": "application/json"}
        url = f"{second.base}/a2a/gate/"
        async with http.post(url, data=_json.dumps(body), headers=headers) as response:
            frames = frames_of(response)
            seq, first = await anext(frames)
            assert first["result"]["task"]["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
            # Cancelled through the first replica, the task ends on the second's stream.
            cancelled = await rpc(admin, "gate", "CancelTask", {"id": task["id"]})
            assert cancelled["result"]["status"]["state"] == "TASK_STATE_CANCELED"
            rest = [frame async for frame in frames]
    finally:
        second.stop()
    log = await stored_events(served, task["id"])
    assert seq < log[-1].seq and log[-1].type == "run.finished"
    assert [(s, f["result"]["statusUpdate"]["status"]["state"]) for s, f in rest] == [
        (log[-1].seq, "TASK_STATE_CANCELED"),
    ]  # fmt: skip


async def test_the_0_3_method_names_are_answered_in_0_3(served: Served, admin: Api) -> None:
    served.model.set_rules(rules({"content": "old school"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    sent = await rpc(admin, "bot", "message/send", {
        "message": {"kind": "message", "messageId": "legacy-1", "role": "user",
                    "parts": [{"kind": "text", "text": "hi"}]},
    }, **{"A2A-Version": "0.3"})  # fmt: skip
    task = sent["result"]
    assert task["kind"] == "task" and task["status"]["state"] == "completed", sent
    assert task["artifacts"][0]["parts"] == [{"kind": "text", "text": "old school"}]
    assert task["history"][0] == {
        "kind": "message", "messageId": "legacy-1", "contextId": task["contextId"],
        "taskId": task["id"], "role": "user", "parts": [{"kind": "text", "text": "hi"}],
    }  # fmt: skip
    got = await rpc(admin, "bot", "tasks/get", {"id": task["id"], "historyLength": 0})
    assert got["result"]["status"]["state"] == "completed" and "history" not in got["result"]
    again = await rpc(admin, "bot", "tasks/resubscribe", {"id": task["id"]})
    assert again["error"]["code"] == -32004  # it ended: nothing to follow
    served.model.inject_delay(0.3)  # the stream begins before the task ends
    frames = await sse(admin, "bot", "message/stream", {
        "message": {"messageId": "legacy-2", "role": "user", "parts": [{"kind": "text", "text": "x"}]},
    })  # fmt: skip
    items = [f[1]["result"] for f in frames]
    assert items[0]["kind"] == "task" and items[-1]["kind"] == "status-update"
    assert items[-1]["final"] is True and items[-1]["status"]["state"] == "completed"
    assert items[-2]["kind"] == "artifact-update"


async def test_the_sdks_0_3_client_speaks_to_the_0_3_interface(served: Served, admin: Api) -> None:
    served.model.set_rules(rules({"content": "from the past"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    async with sdk(served, admin.key) as (_, card):
        del card.supported_interfaces[0]  # a client that knows only 0.3
        assert card.supported_interfaces[0].protocol_version == "0.3"
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {admin.key}"}) as http:
            factory = ClientFactory(ClientConfig(httpx_client=http, streaming=True))
            client = factory.create(card)
            served.model.inject_delay(0.3)  # the stream begins before the task ends
            events = [e async for e in client.send_message(message("hi", "compat-1"))]
            await client.close()
    assert kinds(events)[0] == "task"
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    answers = [e.artifact_update.artifact for e in events if e.HasField("artifact_update")]
    assert [a.parts[0].text for a in answers] == ["from the past"]


async def test_another_tenants_agents_and_tasks_do_not_exist(
    served: Served, admin: Api, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(rules({"content": "secret"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    async with sdk(served, admin.key, streaming=False) as (client, _):
        task = await answer(client, message("hi", "mine"))
    other = Api(served, await served.key("other-a2a", "admin"), http)
    for path in ("/a2a/bot/.well-known/agent-card.json", "/.well-known/agent-card.json"):
        assert (await other.call("GET", path)).status == 404
    refused = await other.call("POST", "/a2a/bot/", json={"jsonrpc": "2.0", "id": 1,
                               "method": "GetTask", "params": {"id": task.id}})  # fmt: skip
    assert refused.status == 404 and task.id not in refused.text
    # The other tenant's own Agent of the same name knows nothing of the task either.
    assert (await other.apply(agent_yaml(served.model.url))).status == 200
    for method in ("GetTask", "CancelTask", "SubscribeToTask"):
        reply = await rpc(other, "bot", method, {"id": task.id})
        assert reply["error"]["code"] == -32001 and task.id not in _json.dumps_str(reply), reply
    async with sdk(served, other.key) as (stranger, _):
        with pytest.raises(TaskNotFoundError):
            await stranger.get_task(GetTaskRequest(id=task.id))
        assert list((await stranger.list_tasks(ListTasksRequest())).tasks) == []
    foreign = await rpc(other, "bot", "SendMessage", {"message": {
        "messageId": "x", "role": "ROLE_USER", "parts": [{"text": "y"}], "taskId": task.id,
    }})  # fmt: skip
    assert foreign["error"]["code"] == -32001
    taken = await rpc(other, "bot", "SendMessage", {"message": {
        "messageId": "z", "role": "ROLE_USER", "parts": [{"text": "y"}],
        "contextId": task.context_id,
    }})  # fmt: skip
    # A context id is the tenant's own: the other tenant's is a new context of its own,
    # which knows nothing of the victim's conversation.
    started = taken["result"]["task"]
    assert started["contextId"] == task.context_id and started["id"] != task.id
    theirs = await admin.call("GET", f"/v1/runs/{task.id}")
    assert theirs.body["run"]["session"] == task.context_id and theirs.body["run"]["turn"] == 0
    mine = await other.call("GET", f"/v1/runs/{started['id']}")
    assert mine.body["run"]["turn"] == 0, "a first turn: the victim's turn is not its history"
    assert (await admin.call("GET", f"/v1/runs/{task.id}")).body["run"]["status"] == "succeeded"


async def test_each_role_sends_reads_or_cancels_as_it_may(
    served: Served, admin: Api, tenant: str, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(rules({"content": "ok"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    viewer = Api(served, await served.key(tenant, "viewer"), http)
    user = Api(served, await served.key(tenant, "user"), http)
    send = {"message": {"messageId": "r-1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send}
    assert (await viewer.call("POST", "/a2a/bot/", json=body)).status == 403
    task = (await rpc(user, "bot", "SendMessage", send))["result"]["task"]
    assert (await rpc(viewer, "bot", "GetTask", {"id": task["id"]}))["result"]["id"] == task["id"]
    assert len((await rpc(viewer, "bot", "ListTasks", {}))["result"]["tasks"]) == 1
    cancel = {"jsonrpc": "2.0", "id": 2, "method": "CancelTask", "params": {"id": task["id"]}}
    assert (await viewer.call("POST", "/a2a/bot/", json=cancel)).status == 403


async def test_bad_calls_get_the_protocols_errors(served: Served, admin: Api) -> None:
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    raw = await admin.call(
        "POST", "/a2a/bot/", data="{", headers={"Content-Type": "application/json"}
    )
    assert raw.status == 200 and raw.body["error"]["code"] == -32700
    batch = await admin.call("POST", "/a2a/bot/", json=[{"jsonrpc": "2.0", "method": "GetTask"}])
    assert batch.body["error"]["code"] == -32600
    text = {"messageId": "b", "role": "ROLE_USER", "parts": [{"text": "hi"}]}
    cases = {
        ("NoSuchMethod", None): -32601,
        ("SendMessage", "no message"): -32602,
        ("SendMessage", "agent role"): -32602,
        ("SendMessage", "file"): -32005,
        ("SendMessage", "output"): -32005,
        ("CreateTaskPushNotificationConfig", None): -32003,
        ("GetExtendedAgentCard", None): -32004,
        ("ListTasks", "status"): -32602,
        ("ListTasks", "token"): -32602,
    }
    params = {
        None: {},
        "no message": {"configuration": {}},
        "agent role": {"message": {**text, "role": "ROLE_AGENT"}},
        "file": {"message": {**text, "parts": [{"url": "http://x/y.png"}]}},
        "output": {"message": text, "configuration": {"acceptedOutputModes": ["image/png"]}},
        "status": {"status": "TASK_STATE_SLEEPING"},
        "token": {"pageToken": "not a token"},
    }
    for (method, case), code in cases.items():
        reply = await rpc(admin, "bot", method, params[case])
        assert reply["error"]["code"] == code, (method, case, reply)
    missing = await rpc(admin, "bot", "SendMessage", params["no message"])
    assert missing["error"]["message"].startswith("params.message"), missing
    version = await rpc(admin, "bot", "GetTask", {"id": "x"}, **{"A2A-Version": "2.0"})
    assert version["error"]["code"] == -32009
