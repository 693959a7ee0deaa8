"""A2A's ListTasks over real HTTP against a real ``agentrt serve``: a tenant's tasks of
one Agent paged the last updated first, each exactly once, however many the tenant
has, with the right ``totalSize``; and a ``user`` key's tasks are those it started."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp

from agentrt import _json
from agentrt.server.a2a_wire import timestamp
from agentrt.state import EventDraft, NewRun, RunUpdate, Store
from tests.conftest import rules
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served

MANY = 1100  # more than the 1,000 newest runs ListTasks once looked among


def _message(message_id: str) -> dict[str, Any]:
    return {"message": {"messageId": message_id, "role": "ROLE_USER", "parts": [{"text": "hi"}]}}


async def _rpc(api: Api, method: str, params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    reply = await api.call("POST", "/a2a/bot/", json=body)
    assert reply.status == 200, reply
    return reply.body


async def _pages(api: Api, size: int, **params: Any) -> tuple[list[dict[str, Any]], set[int]]:
    """Every task ListTasks gives, page after page, and each page's ``totalSize``."""
    tasks: list[dict[str, Any]] = []
    totals: set[int] = set()
    token = ""
    while True:
        reply = await _rpc(api, "ListTasks", {**params, "pageSize": size, "pageToken": token})
        result = reply["result"]
        assert len(result["tasks"]) <= size and result["pageSize"] == size
        tasks += result["tasks"]
        totals.add(result["totalSize"])
        token = result["nextPageToken"]
        if not token:
            return tasks, totals


async def _finished_run(store: Store, run: NewRun, at: float) -> None:
    """A run that ended at ``at``, made in the store: no worker ever takes it up."""
    await store.create_run(run, [EventDraft("run.created", {"input": "hi"}, run.created_at)])
    await store.append_events(
        run.id, [EventDraft("run.finished", {"status": "succeeded"}, at)], expected_seq=1,
        owner="elsewhere", update=RunUpdate(status="succeeded"),
    )  # fmt: skip


async def _seed(served: Served, tenant: str, t0: float) -> list[str]:
    """``MANY`` ended runs of ``bot`` in ``tenant``, the first made the last updated, and
    runs of another agent and another tenant; the ids in ListTasks' order."""
    lease = {"lease_owner": "elsewhere", "lease_expires": time.time() + 3600}
    async with Store.from_url(served.store_url) as store:
        for start in range(0, MANY, 100):
            await asyncio.gather(*(
                _finished_run(store, NewRun(f"run_many_{tenant}_{i:04d}", tenant, "bot",
                              t0 + i, **lease), t0 + MANY - i // 2)  # two at each time
                for i in range(start, min(start + 100, MANY))
            ))  # fmt: skip
        await _finished_run(store, NewRun(f"run_other_{tenant}", tenant, "other", t0, **lease), t0)
        await _finished_run(
            store, NewRun(f"run_else_{tenant}", "elsewhere", "bot", t0, **lease), t0
        )
    # Last updated first; of two updated together, the greater id first.
    order = sorted(range(MANY), key=lambda i: (i // 2, -i))
    return [f"run_many_{tenant}_{i:04d}" for i in order]


async def test_every_task_of_a_tenant_with_many_is_listed_once_in_order(
    served: Served, admin: Api, tenant: str
) -> None:
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    t0 = float(int(time.time()) - 10 * MANY)  # whole seconds: a timestamp says them exactly
    expected = await _seed(served, tenant, t0)
    tasks, totals = await _pages(admin, 100)
    assert [t["id"] for t in tasks] == expected, "each once, the last updated first"
    assert totals == {MANY}
    stamps = [t["status"]["timestamp"] for t in tasks]
    assert stamps == sorted(stamps, reverse=True) and stamps[0] == timestamp(t0 + MANY)
    # Bounded by the status time, on every page too; a state none has matches none.
    after = timestamp(t0 + MANY - 30)
    recent, totals = await _pages(admin, 7, statusTimestampAfter=after)
    assert [t["id"] for t in recent] == expected[:60] and totals == {60}
    working = (await _rpc(admin, "ListTasks", {"status": "TASK_STATE_WORKING"}))["result"]
    assert working["tasks"] == [] and working["totalSize"] == 0
    done, totals = await _pages(admin, 100, status="TASK_STATE_COMPLETED")
    assert [t["id"] for t in done] == expected and totals == {MANY}


async def test_a_page_token_is_one_the_server_gave(admin: Api, served: Served) -> None:
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    for position in (b'[1.0,"run\\u0000"]', b'["nan","x"]', b'[1e999,"x"]', b"[1.0]", b"{}", b"{"):
        token = base64.urlsafe_b64encode(position).decode().rstrip("=")
        reply = await _rpc(admin, "ListTasks", {"pageToken": token})
        assert reply["error"]["code"] == -32602, (position, reply)
        assert reply["error"]["message"].startswith("params.pageToken"), reply


async def test_a_user_key_lists_and_reads_only_the_tasks_it_started(
    served: Served, admin: Api, tenant: str, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(rules({"content": "ok"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    alice = Api(served, await served.key(tenant, "user", name="alice"), http)
    bob = Api(served, await served.key(tenant, "user", name="bob"), http)
    viewer = Api(served, await served.key(tenant, "viewer"), http)
    started: dict[str, list[str]] = {"alice": [], "bob": [], "admin": []}
    for who, api, count in (("alice", alice, 3), ("bob", bob, 2), ("admin", admin, 1)):
        for n in range(count):
            reply = await _rpc(api, "SendMessage", _message(f"{who}-{n}"))
            started[who].append(reply["result"]["task"]["id"])
    run = await admin.call("GET", f"/v1/runs/{started['alice'][0]}")
    assert run.body["run"]["principal"] == "key:alice", "a task records who started it"
    everyone = {i for ids in started.values() for i in ids}
    for who, api in (("alice", alice), ("bob", bob)):
        tasks, totals = await _pages(api, 2)
        assert {t["id"] for t in tasks} == set(started[who]), who
        assert totals == {len(started[who])}
    for api in (admin, viewer):
        tasks, totals = await _pages(api, 4)
        assert {t["id"] for t in tasks} == everyone and totals == {len(everyone)}
    # Another key's task does not exist for a user key, whichever way it is asked for.
    theirs = started["bob"][0]
    for method in ("GetTask", "CancelTask", "SubscribeToTask"):
        reply = await _rpc(alice, method, {"id": theirs})
        assert reply["error"]["code"] == -32001 and theirs not in _json.dumps_str(reply)
    # Bob's message id sent by alice is alice's own message: a task of hers, not his.
    same_id = await _rpc(alice, "SendMessage", _message("bob-0"))
    assert same_id["result"]["task"]["id"] not in everyone
    assert theirs not in _json.dumps_str(same_id)
    again = await _rpc(alice, "SendMessage", _message("alice-0"))
    assert again["result"]["task"]["id"] == started["alice"][0], "its own message: its task"
    assert (await admin.call("GET", f"/v1/runs/{theirs}")).body["run"]["status"] == "succeeded"
