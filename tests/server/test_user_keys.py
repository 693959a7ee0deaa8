"""What a ``user`` key owns within its tenant, over real HTTP: the runs and sessions it
started, and the idempotency keys it sent. Another user key of the same tenant cannot
list, read or continue them, gets its own run for the same idempotency key, and every
way in (queries, chat completions, A2A) records who started the run."""

from __future__ import annotations

import aiohttp
import pytest

from agentrt.state.base import Store
from tests.conftest import call, rules
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served


@pytest.fixture
async def users(served: Served, tenant: str, http: aiohttp.ClientSession) -> tuple[Api, Api]:
    """Two user keys of the test's tenant (``ann`` and ``bob``), Agent ``bot`` applied."""
    admin = Api(served, await served.key(tenant, "admin", name="admin"), http)
    assert (await admin.apply(agent_yaml(served.model.url, tools=True))).status == 200
    served.model.set_rules(rules({"content": "hello"}))
    ann = Api(served, await served.key(tenant, "user", name="ann"), http)
    bob = Api(served, await served.key(tenant, "user", name="bob"), http)
    return ann, bob


async def _query(api: Api, **body: object) -> dict[str, object]:
    reply = await api.call("POST", "/v1/queries", json={"target": "bot", "wait": True, **body})
    assert reply.status == 200, reply
    return reply.body["run"]  # type: ignore[no-any-return]


async def test_a_user_key_sees_and_continues_only_its_own_sessions(
    users: tuple[Api, Api], served: Served, tenant: str
) -> None:
    ann, bob = users
    await _query(ann, input="hi", session="chat")
    assert [s["id"] for s in (await ann.call("GET", "/v1/sessions")).body["items"]] == ["chat"]
    assert (await bob.call("GET", "/v1/sessions")).body["items"] == []
    assert (await bob.call("GET", "/v1/sessions/chat")).status == 404

    taken = await bob.call(
        "POST", "/v1/queries", json={"target": "bot", "input": "me too", "session": "chat"}
    )
    assert taken.status == 409 and taken.body["error"]["code"] == "session_taken"
    assert "ann" not in taken.text
    turns = (await ann.call("GET", "/v1/sessions/chat")).body["turns"]
    assert len(turns) == 1  # bob's turn was never created

    await _query(bob, input="hi", session="mine")
    operator = Api(served, await served.key(tenant, "operator"), ann.http)
    listed = (await operator.call("GET", "/v1/sessions")).body["items"]
    assert {s["id"] for s in listed} == {"chat", "mine"}
    # An operator acts for the tenant: it may continue a user's session.
    assert (await _query(operator, input="and then", session="chat"))["session"] == "chat"


async def test_the_same_idempotency_key_from_two_users_starts_two_runs(
    users: tuple[Api, Api],
) -> None:
    ann, bob = users
    first = await _query(ann, input="hi", idempotency_key="k1")
    again = await _query(ann, input="hi", idempotency_key="k1")
    other = await _query(bob, input="hi", idempotency_key="k1")
    assert again["id"] == first["id"]
    assert other["id"] != first["id"]
    assert (await bob.call("GET", f"/v1/runs/{first['id']}")).status == 404


async def test_chat_completions_and_a2a_record_who_started_the_run(
    users: tuple[Api, Api], served: Served
) -> None:
    ann, bob = users
    chat = await ann.call(
        "POST",
        "/v1/chat/completions",
        json={"model": "agent/bot", "user": "u1", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status == 200, chat
    chat_run = chat.headers["X-Agentrt-Run"]
    same_user = await bob.call(
        "POST",
        "/v1/chat/completions",
        json={"model": "agent/bot", "user": "u1", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert same_user.status == 200, same_user  # bob's end user u1 is not ann's
    assert same_user.headers["X-Agentrt-Session"] != chat.headers["X-Agentrt-Session"]

    sent = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}},
    }
    task = (await ann.call("POST", "/a2a/bot/", json=sent)).body["result"]["task"]
    async with Store.from_url(served.store_url) as store:
        for run_id in (chat_run, task["id"]):
            run = await store.get_run(run_id)
            assert run is not None and run.principal == "key:ann"
            assert (await store.read_events(run_id))[0].data["by"] == "key:ann"
    assert (await ann.call("GET", f"/v1/runs/{chat_run}")).status == 200
    assert (await bob.call("GET", f"/v1/runs/{chat_run}")).status == 404
    get = {"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": task["id"]}}
    assert "error" in (await bob.call("POST", "/a2a/bot/", json=get)).body
    # The same messageId from bob is bob's own message: a task of his, not ann's back.
    bobs = (await bob.call("POST", "/a2a/bot/", json=sent)).body["result"]["task"]
    assert bobs["id"] != task["id"] and bobs["contextId"] != task["contextId"]


async def test_a_querys_budgets_lower_the_agents_and_never_raise_them(
    users: tuple[Api, Api], served: Served
) -> None:
    ann, _ = users
    served.model.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": "5"}))
    held = await _query(ann, input="add", budgets={"max_tool_calls": 0})
    assert held["status"] == "budget_exhausted", held
    assert "max_tool_calls" in str(held["reason"])
    async with Store.from_url(served.store_url) as store:
        created = (await store.read_events(str(held["id"])))[0].data
    assert created["spec"]["budgets"]["max_tool_calls"] == 0

    # The Agent leaves tool calls unlimited and allows 100 child runs (its default).
    asked = {"max_tool_calls": 7, "max_child_runs": 1000, "deadline_s": 60}
    raised = await _query(ann, input="add", budgets=asked)
    assert raised["status"] == "succeeded", raised
    async with Store.from_url(served.store_url) as store:
        budgets = (await store.read_events(str(raised["id"])))[0].data["spec"]["budgets"]
    assert (budgets["max_tool_calls"], budgets["deadline_s"]) == (7, 60)
    assert (
        budgets.get("max_child_runs", 100) == 100
    )  # never raised above the Agent's (a default is not written)

    wrong = await ann.call(
        "POST", "/v1/queries", json={"target": "bot", "input": "x", "budgets": {"max_tokens": 0}}
    )
    assert wrong.status == 422 and "budgets" in wrong.text
