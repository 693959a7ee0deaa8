"""Sessions over real HTTP: listed with their state, read with their turns, deleted;
and the double-texting table: each policy against a session whose turn is running,
waits for approval, or is done, with the runs it leaves and the history each later
turn was given (read from the requests the model server received)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.spec import ScriptedRule
from tests.conftest import call
from tests.server.harness import Api, Reply, Served

INTERRUPTED = "not run: the turn was interrupted by a newer message"
SLEEP_S = 4.0

RULES = [
    ScriptedRule.model_validate(rule)
    for rule in [
        {
            "match": "^slow",
            "steps": [
                {"tool_calls": [call("add", a=2, b=3)]},
                {"tool_calls": [call("sleep", seconds=SLEEP_S)]},
                {"content": "woke up"},
            ],
        },
        {
            "match": "^ask",
            "steps": [
                {"tool_calls": [call("checked_add", a=2, b=2)]},
                {"content": "{last_tool_result}"},
            ],
        },
    ]
]


def _resources(model_url: str) -> str:
    doc = (
        "---\napiVersion: agentrt.dev/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
    tools = {
        "add": "{kind: python, callable: 'tests.sample_tools:add', idempotent: true}",
        "sleep": "{kind: python, callable: 'tests.sample_tools:sleep', idempotent: true}",
        "checked_add": "{kind: python, callable: 'tests.sample_tools:add', approval: {required: true}}",
    }
    text = doc.format(
        kind="Model",
        name="m",
        spec=f"{{provider: openai, base_url: '{model_url}', max_retries: 0}}",
    )
    for name, spec in tools.items():
        text += doc.format(kind="Tool", name=name, spec=spec)
    return text + doc.format(
        kind="Agent", name="bot", spec="{model: m, tools: [add, sleep, checked_add]}"
    )


# What a later turn is given of the first one, as (role, content) pairs.
FIRST = {
    "idle": [("user", "hello"), ("assistant", "You said: hello")],
    "running": [
        ("user", "slow one"), ("assistant", ""), ("tool", "5"), ("assistant", ""),
        ("tool", f"slept {SLEEP_S}"), ("assistant", "woke up"),
    ],
    "waiting": [("user", "ask first"), ("assistant", ""), ("tool", "4"), ("assistant", "4")],
}  # fmt: skip
CUT = {
    "running": [
        ("user", "slow one"),
        ("assistant", ""),
        ("tool", "5"),
        ("assistant", ""),
        ("tool", INTERRUPTED),
    ],
    "waiting": [("user", "ask first"), ("assistant", ""), ("tool", INTERRUPTED)],
}
STATE = {"idle": "idle", "running": "busy", "waiting": "waiting"}

# policy, the first turn's state -> the second query's answer, how the first turn ends,
# its cancel's cause, and what later turns see of it ("whole", "cut" or "none").
TABLE: dict[tuple[str, str], tuple[int, str, str | None, str]] = {
    ("reject", "idle"): (202, "succeeded", None, "whole"),
    ("reject", "running"): (409, "succeeded", None, "whole"),
    ("reject", "waiting"): (409, "succeeded", None, "whole"),
    ("enqueue", "idle"): (202, "succeeded", None, "whole"),
    ("enqueue", "running"): (202, "succeeded", None, "whole"),
    ("enqueue", "waiting"): (202, "succeeded", None, "whole"),
    ("interrupt", "idle"): (202, "succeeded", None, "whole"),
    ("interrupt", "running"): (202, "cancelled", "interrupt", "cut"),
    ("interrupt", "waiting"): (202, "cancelled", "interrupt", "cut"),
    ("rollback", "idle"): (202, "succeeded", None, "whole"),
    ("rollback", "running"): (202, "cancelled", "rollback", "none"),
    ("rollback", "waiting"): (202, "cancelled", "rollback", "none"),
}


async def _until(api: Api, path: str, done: Any, timeout: float = 30.0) -> Reply:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        reply = await api.call("GET", path)
        if done(reply.body):
            return reply
        assert time.monotonic() < deadline, f"timed out on {path}: {reply.body}"
        await asyncio.sleep(0.05)


def _ended(body: Any) -> bool:
    return body["run"]["status"] in ("succeeded", "failed", "cancelled")


def _prompt(served: Served, user: str) -> list[tuple[str, str]]:
    """What the model was given (no system prompt) the first time ``user`` was the latest
    user message."""
    for request in served.model.requests:
        users = [m for m in request["messages"] if m["role"] == "user"]
        if users and users[-1]["content"] == user:
            messages = [m for m in request["messages"] if m["role"] != "system"]
            return [(m["role"], str(m.get("content") or "")) for m in messages]
    raise AssertionError(f"the model was never asked about {user!r}")


async def _approve(served: Served, run_id: str, events: list[dict[str, Any]]) -> None:
    """A person approves the waiting call, from another process's runtime on the store."""
    step = next(e["step"] for e in events if e["type"] == "approval.requested")
    async with Runtime(served.store_url, resume_interrupted=False) as rt:
        await rt.approve(run_id, step, by="ana")


async def _first_turn(api: Api, served: Served, state: str, session: str) -> dict[str, Any]:
    """Start the session's first turn and bring it to ``state``; its run."""
    text = {"idle": "hello", "running": "slow one", "waiting": "ask first"}[state]
    reply = await api.call(
        "POST", "/v1/queries",
        json={"target": "bot", "input": text, "session": session, "wait": state != "running"},
    )  # fmt: skip
    assert reply.status in (200, 202), reply
    run = reply.body["run"]
    if state == "running":  # until it sleeps in its tool (a 202 may say it is queued)
        read = await _until(
            api, f"/v1/runs/{run['id']}",
            lambda b: any(e["type"] == "tool.call" and e["data"]["name"] == "sleep" for e in b["events"]),
        )  # fmt: skip
        run = read.body["run"]
    expected = {"idle": "succeeded", "waiting": "waiting_approval", "running": "running"}[state]
    assert run["status"] == expected, run
    return run


@pytest.mark.parametrize(("policy", "state"), sorted(TABLE))
async def test_double_texting(served: Served, admin: Api, policy: str, state: str) -> None:
    served.model.set_rules(RULES)
    served.model.reset_log()  # every case asks the same questions
    assert (await admin.apply(_resources(served.model.url))).status == 200
    answer, first_ends, cause, kept = TABLE[policy, state]
    first = await _first_turn(admin, served, state, "chat")
    seen = await admin.call("GET", "/v1/sessions/chat")
    assert seen.body["session"]["state"] == STATE[state], seen.body

    query = {"target": "bot", "input": "second", "session": "chat", "double_texting": policy}
    reply = await admin.call("POST", "/v1/queries", json=query)
    assert reply.status == answer, reply
    if answer == 409:
        # A clear refusal, and nothing created: the session still has its one turn.
        assert reply.body["error"]["code"] == "session_busy"
        listed = await admin.call("GET", "/v1/runs?session=chat")
        assert [r["id"] for r in listed.body["items"]] == [first["id"]]
        if state == "waiting":
            body = (await admin.call("GET", f"/v1/runs/{first['id']}")).body
            await _approve(served, first["id"], body["events"])
        await _until(admin, f"/v1/runs/{first['id']}", _ended)
        reply = await admin.call("POST", "/v1/queries", json=query)  # idle now: let in
        assert reply.status == 202, reply
    second = reply.body["run"]
    if policy == "enqueue" and state == "waiting":
        # It waits behind the turn that waits for a person, and is not given to the model.
        await asyncio.sleep(0.5)
        assert all("second" not in str(r["messages"]) for r in served.model.requests)
        waiting = await admin.call("GET", "/v1/sessions/chat")
        assert waiting.body["session"]["state"] == "waiting"
        body = (await admin.call("GET", f"/v1/runs/{first['id']}")).body
        await _approve(served, first["id"], body["events"])
    await _until(admin, f"/v1/runs/{second['id']}", _ended)
    third = await admin.call(
        "POST",
        "/v1/queries",
        json={"target": "bot", "input": "third", "session": "chat", "wait": True},
    )
    assert third.status == 200 and third.body["result"]["status"] == "succeeded", third

    session = await admin.call("GET", "/v1/sessions/chat")
    turns = session.body["turns"]
    assert session.body["session"]["state"] == "idle"
    assert [t["run"]["id"] for t in turns] == [first["id"], second["id"], third.body["run"]["id"]]
    assert [t["status"] for t in turns] == [first_ends, "succeeded", "succeeded"]
    assert turns[0]["cancel_cause"] == cause and turns[0]["in_history"] == (kept != "none")
    assert all(t["run"]["session"] == "chat" for t in turns)
    earlier = {"whole": FIRST[state], "cut": CUT.get(state, []), "none": []}[kept]
    assert _prompt(served, "second") == [*earlier, ("user", "second")]
    assert _prompt(served, "third") == [
        *earlier, ("user", "second"), ("assistant", "You said: second"), ("user", "third"),
    ]  # fmt: skip


async def test_sessions_are_listed_read_and_deleted_in_the_callers_tenant(
    served: Served, admin: Api, tenant: str
) -> None:
    served.model.set_rules(RULES)
    served.model.reset_log()
    assert (await admin.apply(_resources(served.model.url))).status == 200
    for name in ("older", "newer"):
        reply = await admin.call(
            "POST",
            "/v1/queries",
            json={"target": "bot", "input": "hello", "session": name, "wait": True},
        )
        assert reply.status == 200, reply
    running = await _first_turn(admin, served, "running", "newer")
    listed = await admin.call("GET", "/v1/sessions?limit=1")
    assert [(s["id"], s["state"]) for s in listed.body["items"]] == [("newer", "busy")]
    page = await admin.call("GET", f"/v1/sessions?cursor={listed.body['next_cursor']}")
    assert [(s["id"], s["state"], s["turn_count"]) for s in page.body["items"]] == [
        ("older", "idle", 1)
    ]
    assert page.body["next_cursor"] is None
    assert (await admin.call("GET", "/v1/sessions?cursor=nonsense")).status == 400

    # Another tenant may use the same session id: it is its own, and it sees nothing of ours.
    other = Api(served, await served.key(f"{tenant}-x", "admin"), admin.http)
    assert (await other.apply(_resources(served.model.url))).status == 200
    assert (await other.call("GET", "/v1/sessions")).body["items"] == []
    for method in ("GET", "DELETE"):
        missing = await other.call(method, "/v1/sessions/older")
        assert missing.status == 404 and "older" not in missing.text, missing
    theirs = await other.call(
        "POST",
        "/v1/queries",
        json={"target": "bot", "input": "mine", "session": "older", "wait": True},
    )
    assert theirs.status == 200 and theirs.body["run"]["session"] == "older"
    assert theirs.body["run"]["namespace"] == f"{tenant}-x"
    assert _prompt(served, "mine") == [("user", "mine")], "another tenant's history leaked"

    busy = await admin.call("DELETE", "/v1/sessions/newer")
    assert busy.status == 409 and busy.body["error"]["code"] == "session_busy", busy
    viewer = Api(served, await served.key(tenant, "viewer"), admin.http)
    assert (await viewer.call("DELETE", "/v1/sessions/older")).status == 403
    await _until(admin, f"/v1/runs/{running['id']}", _ended)
    shown = await admin.call("GET", "/v1/sessions/newer")
    runs = [t["run"]["id"] for t in shown.body["turns"]]
    deleted = await admin.call("DELETE", "/v1/sessions/newer")
    assert deleted.status == 200 and sorted(deleted.body["deleted"]["runs"]) == sorted(runs)
    assert (await admin.call("GET", "/v1/sessions/newer")).status == 404
    for run_id in runs:
        assert (await admin.call("GET", f"/v1/runs/{run_id}")).status == 404
    left = await admin.call("GET", "/v1/sessions")
    assert [s["id"] for s in left.body["items"]] == ["older"]
    assert (await other.call("GET", "/v1/sessions")).body["items"][0]["id"] == "older"
