"""The OpenAI-compatible endpoints over real HTTP, spoken to with the official
``openai`` client: an Agent (or Team) of the key's tenant as the model, its run
a normal durable run that ``agentrt runs show`` opens."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from agentrt.state import Store
from tests.conftest import call, rules
from tests.server.conftest import agent_yaml
from tests.server.harness import ROOT, Api, Served, start_serve

TEAM = (
    "---\napiVersion: agentrt.dev/v1\nkind: Team\nmetadata: {name: duo}\n"
    "spec: {strategy: {kind: sequential, members: [bot]}}\n"
)


Client = Callable[..., AsyncOpenAI]


@pytest.fixture
async def client(served: Served) -> AsyncIterator[Client]:
    """Makes official clients pointed at the served API with a key; closes them after."""
    made: list[AsyncOpenAI] = []

    def make(key: str, **options: Any) -> AsyncOpenAI:
        options.setdefault("max_retries", 0)
        made.append(AsyncOpenAI(base_url=f"{served.base}/v1", api_key=key, **options))
        return made[-1]

    yield make
    for each in made:
        await each.close()


async def runs_show(served: Served, run_id: str) -> dict[str, Any]:
    """``agentrt runs show RUN --json`` run as a process over the server's store."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentrt.cli.main", "--store", served.store_url,
        "runs", "show", run_id, "--json", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    data: dict[str, Any] = json.loads(out)
    return data


async def stored_runs(served: Served, tenant: str) -> list[Any]:
    """The tenant's runs, read from the server's store."""
    async with Store.from_url(served.store_url) as store:
        return await store.list_runs(namespace=tenant)


@pytest.fixture
async def adder(served: Served, admin: Api) -> Api:
    """Agent ``bot`` with the ``add`` tool (and Team ``duo`` of it); the model calls
    ``add(2, 3)`` and then answers ``5``."""
    served.model.clear_injections()
    served.model.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": "5"}))
    applied = await admin.apply(agent_yaml(served.model.url, tools=True) + TEAM)
    assert applied.status == 200, applied
    return admin


async def test_a_completion_is_a_run_with_its_answer_usage_and_id(
    served: Served, client: Client, adder: Api
) -> None:
    assert adder.key is not None
    raw = await client(adder.key).chat.completions.with_raw_response.create(
        model="agent/bot", messages=[{"role": "user", "content": "2+3?"}]
    )
    answer = raw.parse()
    assert answer.object == "chat.completion" and answer.model == "agent/bot"
    assert answer.choices[0].message.content == "5"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == "stop"
    assert raw.headers["x-agentrt-run"] == answer.id
    assert raw.headers["location"] == f"/v1/runs/{answer.id}"
    # The run behind it is a durable run like any other: the CLI opens it.
    shown = await runs_show(served, answer.id)
    run = shown["run"]
    assert run["status"] == "succeeded" and run["agent"] == "bot"
    calls = [e["data"] for e in shown["events"] if e["type"] == "tool.call"]
    assert [(c["name"], json.loads(c["args"])) for c in calls] == [("add", {"a": 2, "b": 3})]
    results = [e["data"]["output"] for e in shown["events"] if e["type"] == "tool.result"]
    assert results == ["5"]
    # Its usage is the run's: both model calls, tool-calling one included.
    usage = answer.usage
    assert usage is not None
    assert usage.prompt_tokens == run["usage"]["input_tokens"] > 0
    assert usage.completion_tokens == run["usage"]["output_tokens"] > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert run["usage"]["model_calls"] == 2 and run["usage"]["tool_calls"] == 1


async def test_a_streamed_completion_ends_with_usage_and_done(
    served: Served, client: Client, adder: Api, http: aiohttp.ClientSession
) -> None:
    assert adder.key is not None
    stream = await client(adder.key).chat.completions.create(
        model="agent/bot",
        messages=[{"role": "user", "content": "2+3?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    run_id = stream.response.headers["x-agentrt-run"]
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    chunks = [c async for c in stream]
    assert {c.id for c in chunks} == {run_id}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "5"
    *body, finish, last = chunks
    assert finish.choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.choices[0].finish_reason is None for c in body)
    assert last.choices == [] and last.usage is not None
    shown = await runs_show(served, run_id)
    assert shown["run"]["status"] == "succeeded"
    assert last.usage.prompt_tokens == shown["run"]["usage"]["input_tokens"] > 0
    assert last.usage.completion_tokens == shown["run"]["usage"]["output_tokens"] > 0
    assert [e["type"] for e in shown["events"]].count("tool.result") == 1
    # On the wire: data lines, ending with [DONE]; no usage without include_usage.
    async with http.post(
        f"{served.base}/v1/chat/completions",
        json={"model": "team/duo", "messages": [{"role": "user", "content": "2+3?"}],
              "stream": True},
        headers={"Authorization": f"Bearer {adder.key}"},
    ) as plain:  # fmt: skip
        lines = [line for line in (await plain.text()).split("\n") if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    sent = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all("usage" not in c and c["model"] == "team/duo" for c in sent)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in sent) == "5"


async def test_one_idempotency_key_gives_one_run_and_one_answer(
    served: Served, client: Client, adder: Api, tenant: str
) -> None:
    assert adder.key is not None
    openai_client = client(adder.key)
    ask = {"model": "bot", "messages": [{"role": "user", "content": "2+3?"}]}
    key = {"Idempotency-Key": "chat-7"}
    first = await openai_client.chat.completions.create(**ask, extra_headers=key)
    again = await openai_client.chat.completions.create(**ask, extra_headers=key)
    assert first.id == again.id and again.choices[0].message.content == "5"
    assert first.model == "agent/bot"  # a bare name is the Agent
    assert [r.id for r in await stored_runs(served, tenant)] == [first.id]


async def test_a_session_remembers_the_conversation(
    served: Served, client: Client, admin: Api, tenant: str
) -> None:
    served.model.set_rules(rules({"content": "noted"}))
    assert (await admin.apply(agent_yaml(served.model.url))).status == 200
    assert admin.key is not None
    chat = client(admin.key).chat.completions
    served.model.reset_log()
    # Without a session, the earlier messages are the conversation so far.
    history = [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": [{"type": "text", "text": "what is my name?"}]},
    ]
    await chat.create(model="agent/bot", messages=history)
    said = served.model.requests[-1]["messages"][-1]["content"]
    assert said == (
        "The conversation so far:\n\nuser: my name is Ada\n\nassistant: noted\n\n"
        "The user now says:\n\nwhat is my name?"
    )
    # With one, agentrt keeps the history: a later turn sends only the new message,
    # and earlier messages sent again are not repeated.
    session = {"X-Agentrt-Session": f"{tenant}-s1"}
    await chat.create(
        model="agent/bot", messages=[{"role": "user", "content": "I am Ada"}],
        extra_headers=session,
    )  # fmt: skip
    raw = await chat.with_raw_response.create(
        model="agent/bot", messages=[*history[:2], {"role": "user", "content": "who am I?"}],
        extra_headers=session,
    )  # fmt: skip
    assert raw.headers["x-agentrt-session"] == f"{tenant}-s1"
    sent = [(m["role"], m["content"]) for m in served.model.requests[-1]["messages"]]
    assert sent[1:] == [("user", "I am Ada"), ("assistant", "noted"), ("user", "who am I?")]
    # `user` is a session of that end user with this model.
    first = await chat.with_raw_response.create(
        model="agent/bot", messages=[{"role": "user", "content": "hi"}], user="u-1"
    )
    second = await chat.with_raw_response.create(
        model="agent/bot", messages=[{"role": "user", "content": "again"}], user="u-1"
    )
    other = await chat.with_raw_response.create(
        model="agent/bot", messages=[{"role": "user", "content": "hi"}], user="u-2"
    )
    ids = [r.headers["x-agentrt-session"] for r in (first, second, other)]
    assert ids[0] == ids[1] != ids[2]
    runs = {r.id: r for r in await stored_runs(served, tenant)}
    turns = [runs[r.parse().id] for r in (first, second)]
    # The store keeps the tenant's session under the tenant's prefix (session_names).
    kept = f"{tenant}/{ids[0]}"
    assert [(r.session_id, r.turn) for r in turns] == [(kept, 0), (kept, 1)]


async def test_another_tenants_agent_is_no_model_of_a_key(
    served: Served, client: Client, adder: Api, tenant: str
) -> None:
    assert adder.key is not None
    mine = client(adder.key)
    listed = await mine.models.list()
    assert sorted(m.id for m in listed.data) == ["agent/bot", "team/duo"]
    assert {m.object for m in listed.data} == {"model"}
    assert (await mine.models.retrieve("team/duo")).id == "team/duo"
    other_key = await served.key(f"{tenant}-other", "admin")
    theirs = client(other_key)
    assert [m.id for m in (await theirs.models.list()).data] == []
    for model in ("agent/bot", "team/duo", "bot", "agent/nope", "gpt-4o/bot"):
        with pytest.raises(openai.NotFoundError) as refused:
            await theirs.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "2+3?"}]
            )
        error = refused.value
        assert error.code == "model_not_found" and error.param == "model", error.body
        assert error.type == "invalid_request_error"
        assert error.response.headers.get("x-agentrt-run") is None
        assert tenant not in error.response.text
    with pytest.raises(openai.NotFoundError):
        await theirs.models.retrieve("agent/bot")
    # Nothing ran for the other tenant, and its key started no run here.
    assert await stored_runs(served, f"{tenant}-other") == []


async def test_bad_requests_get_openai_errors(
    served: Served, client: Client, adder: Api, tenant: str
) -> None:
    assert adder.key is not None
    chat = client(adder.key).chat.completions
    user_msg = [{"role": "user", "content": "2+3?"}]
    refusals: list[tuple[type[openai.APIStatusError], dict[str, Any], str]] = [
        (openai.BadRequestError, {"messages": [*user_msg, {"role": "assistant", "content": "5"}]},
         "messages[1].role"),
        (openai.BadRequestError, {"messages": user_msg, "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        (openai.BadRequestError, {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x"}}]}]}, "messages[0].content"),
        (openai.UnprocessableEntityError, {"messages": user_msg, "n": 2}, "n"),
        (openai.UnprocessableEntityError, {"messages": []}, "messages"),
        (openai.UnprocessableEntityError, {"messages": user_msg, "extra_body": {"colour": 1}},
         "colour"),
    ]  # fmt: skip
    for error_type, request, param in refusals:
        with pytest.raises(error_type) as refused:
            await chat.create(model="agent/bot", **request)
        assert refused.value.param == param, refused.value.body
        assert refused.value.type == "invalid_request_error"
        assert refused.value.message
    viewer = client(await served.key(tenant, "viewer"))
    with pytest.raises(openai.PermissionDeniedError) as denied:
        await viewer.chat.completions.create(model="agent/bot", messages=user_msg)
    assert denied.value.type == "permission_error"
    assert [m.id for m in (await viewer.models.list()).data] == ["agent/bot", "team/duo"]
    with pytest.raises(openai.AuthenticationError):
        await client("agrt_nope").models.list()
    assert await stored_runs(served, tenant) == []


async def test_a_failed_run_is_an_error_the_client_does_not_retry(
    served: Served, client: Client, adder: Api, tenant: str
) -> None:
    assert adder.key is not None
    # The client retries 5xx twice unless told not to; a retry would be a new run.
    chat = client(adder.key, max_retries=2).chat.completions
    served.model.inject(500, count=10)
    with pytest.raises(openai.InternalServerError) as failed:
        await chat.create(model="agent/bot", messages=[{"role": "user", "content": "2+3?"}])
    assert failed.value.status_code == 502 and failed.value.code == "run_failed"
    run_id = failed.value.response.headers["x-agentrt-run"]
    assert run_id in failed.value.message
    stream = await chat.create(
        model="agent/bot", messages=[{"role": "user", "content": "2+3?"}], stream=True
    )
    with pytest.raises(openai.APIError) as broke:
        async for _ in stream:
            pass
    assert broke.value.code == "run_failed"
    runs = await stored_runs(served, tenant)
    assert sorted(r.status for r in runs) == ["failed", "failed"]
    assert run_id in {r.id for r in runs}
    served.model.clear_injections()


async def test_a_run_waiting_for_approval_says_so_and_is_not_started_again(
    served: Served, client: Client, admin: Api, tenant: str
) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=1, b=1)]}, {"content": "2"}))
    gated = agent_yaml(served.model.url, tools=True).replace(
        "idempotent: true}", "idempotent: true, approval: {required: true}}"
    )
    assert (await admin.apply(gated)).status == 200
    assert admin.key is not None
    # A 409 is retried by the client unless the server says not to.
    chat = client(admin.key, max_retries=2).chat.completions
    ask = {"model": "agent/bot", "messages": [{"role": "user", "content": "1+1?"}]}
    key = {"Idempotency-Key": "gated-1"}
    for _ in range(2):
        with pytest.raises(openai.ConflictError) as waiting:
            await chat.create(**ask, extra_headers=key)
        assert waiting.value.code == "run_waiting", waiting.value.body
        assert "Idempotency-Key" in waiting.value.message
    stream = await chat.create(**ask, stream=True, extra_headers=key)
    with pytest.raises(openai.APIError) as streamed:
        async for _ in stream:
            pass
    assert streamed.value.code == "run_waiting"
    runs = await stored_runs(served, tenant)
    assert [r.status for r in runs] == ["waiting_approval"]
    assert waiting.value.response.headers["x-agentrt-run"] == runs[0].id


async def test_a_run_longer_than_the_servers_wait_goes_on_and_is_answered_later(
    served: Served, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    impatient = start_serve(f"sqlite:///{tmp_path / 'wait.db'}", tmp_path, served.model,
                            "--max-wait", "1")  # fmt: skip
    try:
        api = Api(impatient, await impatient.key("patient", "admin"), http)
        served.model.clear_injections()
        served.model.set_rules(rules({"content": "late"}))
        assert (await api.apply(agent_yaml(served.model.url))).status == 200
        served.model.inject_delay(2.5)
        ask = {"model": "agent/bot", "messages": [{"role": "user", "content": "hi"}]}
        key = {"Idempotency-Key": "slow-1"}
        early = await api.call("POST", "/v1/chat/completions", json=ask, headers=key)
        assert early.status == 504, early
        assert early.body["error"]["code"] == "run_not_finished"
        run_id = early.headers["X-Agentrt-Run"]
        # The same key waits for the same run again, until it has answered.
        for _ in range(10):
            later = await api.call("POST", "/v1/chat/completions", json=ask, headers=key)
            if later.status != 504:
                break
        assert later.status == 200, later
        assert later.body["id"] == run_id
        assert later.body["choices"][0]["message"]["content"] == "late"
        assert [r.id for r in await stored_runs(impatient, "patient")] == [run_id]
    finally:
        impatient.stop()
