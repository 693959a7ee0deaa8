"""The ``a2a`` tool kind against real ``agentrt serve`` processes: an agentrt Agent asks
an agentrt Agent of another server, through the official A2A client, over HTTP."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from agentrt.errors import SpecError, ToolError
from agentrt.models.testserver import ModelTestServer
from agentrt.settings import Settings
from agentrt.spec import Tool, parse_resource
from agentrt.state import Store
from agentrt.tools.a2a import A2aToolSet
from agentrt.tools.base import ToolContext
from agentrt.tools.factory import build_toolset
from agentrt.tools.http import SecretResolver
from tests.conftest import call, rules
from tests.server.harness import Api, Served, start_serve

MODEL = "apiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {{name: m}}\n" + (
    "spec: {{provider: openai, base_url: '{url}', max_retries: 0}}\n"
)
EXPERT = (
    "---\napiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: expert}\nspec: {model: m}\n"
)
GATE = (
    "---\napiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: guarded}\n"
    "spec: {kind: python, callable: 'tests.sample_tools:add', approval: {required: true}}\n"
    "---\napiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: gate}\n"
    "spec: {model: m, tools: [guarded]}\n"
)


@pytest.fixture(scope="module")
def model() -> Iterator[ModelTestServer]:
    """The scripted model server both servers' agents reach."""
    server = ModelTestServer()
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory, model: ModelTestServer) -> Iterator[Served]:
    """The server whose agents are called: ``agentrt serve`` over its own store."""
    tmp = tmp_path_factory.mktemp("remote")
    server = start_serve(f"sqlite:///{tmp / 'remote.db'}", tmp, model)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def expert(remote: Served, http: aiohttp.ClientSession) -> tuple[Api, str]:
    """A tenant of the remote server with Agents ``expert`` and ``gate``, its admin's
    client, and a ``user`` key for the tool."""
    tenant = f"t-{secrets.token_hex(4)}"
    admin = Api(remote, await remote.key(tenant, "admin"), http)
    applied = await admin.apply(MODEL.format(url=remote.model.url) + EXPERT + GATE)
    assert applied.status == 200, applied
    return admin, await remote.key(tenant, "user")


def a2a_tool(url: str, **a2a: Any) -> Tool:
    """A Tool of kind a2a sending the key in ``${env:REMOTE_KEY}``."""
    spec = {"url": url, "headers": {"Authorization": "Bearer ${env:REMOTE_KEY}"}, **a2a}
    tool = parse_resource({"apiVersion": "agentrt.dev/v1", "kind": "Tool", "metadata": {"name": "ask"},
                           "spec": {"kind": "a2a", "a2a": spec}})  # fmt: skip
    assert isinstance(tool, Tool)
    return tool


def context(run: str = "run-local", step: int = 3, call_id: str = "c1") -> ToolContext:
    return ToolContext(run_id=run, step=step, call_id=call_id, namespace="default", session_id=None)


async def remote_runs(remote: Served, api: Api) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await api.call("GET", "/v1/runs")).body["items"]
    return items


async def test_an_agent_asks_an_agent_of_another_server(
    tmp_path: Any, remote: Served, expert: tuple[Api, str], http: aiohttp.ClientSession
) -> None:
    admin, key = expert
    remote.model.set_rules(
        rules({"content": "42"}, match="six times seven")
        + rules({"tool_calls": [call("ask", message="what is six times seven?")]},
                {"content": "The expert says 42"}, match="ask the expert")
    )  # fmt: skip
    local = start_serve(
        f"sqlite:///{tmp_path / 'local.db'}", tmp_path, remote.model, "--allow-env", "REMOTE_KEY",
        env={"REMOTE_KEY": key},
    )  # fmt: skip
    try:
        boss = Api(local, await local.key("boss-tenant", "admin"), http)
        tool = (
            "---\napiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: ask}\n"
            f"spec: {{kind: a2a, a2a: {{url: '{remote.base}/a2a/expert/', "
            "headers: {Authorization: 'Bearer ${env:REMOTE_KEY}'}}, idempotent: true}\n"
            "---\napiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: boss}\n"
            "spec: {model: m, tools: [ask]}\n"
        )
        assert (await boss.apply(MODEL.format(url=remote.model.url) + tool)).status == 200
        answered = await boss.call("POST", "/v1/queries", json={
            "target": "boss", "input": "ask the expert", "wait": True,
        })  # fmt: skip
        assert answered.status == 200, answered
        assert answered.body["result"]["output"] == "The expert says 42"
        run = await boss.call("GET", f"/v1/runs/{answered.body['run']['id']}")
    finally:
        local.stop()
    events = run.body["events"]
    asked = next(e for e in events if e["type"] == "tool.call")
    result = next(e for e in events if e["type"] == "tool.result")
    assert result["data"]["output"] == "42"
    assert result["data"]["trace"]["state"] == "completed"
    assert key not in run.text  # the secret is sent, never recorded
    # The remote task is one run, started with the call's idempotency key as the message id.
    [task] = await remote_runs(remote, admin)
    assert task["id"] == result["data"]["trace"]["task"] and task["status"] == "succeeded"
    async with Store.from_url(remote.store_url) as store:
        stored = await store.get_run(task["id"])
    call_key = f"{run.body['run']['id']}:{asked['step']}:{asked['data']['id']}"
    assert stored is not None and stored.principal is not None
    # A user key's idempotency keys are its own (agentrt.server.ownership).
    assert stored.idempotency_key == f"{stored.principal}\x1fa2a/expert/{call_key}"


@pytest.mark.parametrize(
    ("path", "stream"),
    [
        ("/a2a/expert/", True),
        ("/a2a/expert", False),
        ("/a2a/expert/.well-known/agent-card.json", True),
    ],
)
async def test_a_call_sent_again_gets_the_same_task(
    remote: Served, expert: tuple[Api, str], path: str, stream: bool
) -> None:
    admin, key = expert
    remote.model.set_rules(rules({"content": "once"}))
    tool = a2a_tool(remote.base + path, stream=stream)
    toolset = A2aToolSet("ask", tool.spec, secrets=SecretResolver({"REMOTE_KEY": key}))
    try:
        first = await toolset.call("ask", {"message": "hello"}, context())
        # A resumed run calls again with the same key: the remote agent answers from its task.
        again = await toolset.call("ask", {"message": "hello"}, context())
        other = await toolset.call("ask", {"message": "hello"}, context(call_id="c2"))
    finally:
        await toolset.close()
    assert (first.output, first.is_error) == ("once", False)
    assert again.trace["task"] == first.trace["task"] and again.output == "once"
    assert other.trace["task"] != first.trace["task"]
    assert len(await remote_runs(remote, admin)) == 2


async def test_a_task_that_waits_or_fails_is_an_error_result(
    remote: Served, expert: tuple[Api, str]
) -> None:
    _, key = expert
    remote.model.set_rules(rules({"tool_calls": [call("guarded", a=1, b=2)]}, {"content": "3"}))
    environ = {"REMOTE_KEY": key}
    # Built as a Runtime builds it: the settings' environment holds the key.
    gate = build_toolset(
        "ask", a2a_tool(remote.base + "/a2a/gate/").spec, settings=Settings(environ=environ)
    )
    assert isinstance(gate, A2aToolSet)
    waiting = await gate.call("ask", {"message": "add them"}, context())
    assert waiting.is_error and "needs input" in waiting.output and "approval" in waiting.output
    assert waiting.trace["state"] == "input_required"
    remote.model.inject(500, count=3)  # every attempt of the model step: the run fails
    failing = A2aToolSet("ask", a2a_tool(remote.base + "/a2a/expert/").spec,
                         secrets=SecretResolver(environ))  # fmt: skip
    try:
        failed = await failing.call("ask", {"message": "anything"}, context(call_id="f"))
    finally:
        await gate.close()
        await failing.close()
        remote.model.clear_injections()
    assert (
        failed.is_error
        and failed.output.startswith("the agent's task ")
        and "failed" in failed.output
    )
    assert failed.trace["state"] == "failed"


async def test_a_refused_key_is_an_error_that_never_shows_it(remote: Served) -> None:
    wrong = "agrt_0000000000000000_" + "s" * 43
    tool = a2a_tool(remote.base + "/a2a/expert/")
    toolset = A2aToolSet("ask", tool.spec, secrets=SecretResolver({"REMOTE_KEY": wrong}))
    with pytest.raises(ToolError) as refused:
        await toolset.call("ask", {"message": "hi"}, context())
    await toolset.close()
    assert "401" in refused.value.message and wrong not in refused.value.message
    assert refused.value.retryable is False
    missing = A2aToolSet("ask", tool.spec, secrets=SecretResolver({}))
    with pytest.raises(ToolError, match=r"\$\{env:REMOTE_KEY\} is not available"):
        await missing.call("ask", {"message": "hi"}, context())
    with pytest.raises(ToolError, match="give the agent a `message`"):
        await missing.call("ask", {"text": "hi"}, context())


def test_the_spec_names_what_is_wrong() -> None:
    for spec, field in (
        ({"kind": "a2a"}, "a2a"),
        ({"kind": "a2a", "a2a": {"url": "ftp://host/agent"}}, "url"),
        ({"kind": "http", "http": {"url": "http://h"}, "a2a": {"url": "http://h"}}, "a2a"),
    ):
        with pytest.raises(SpecError) as bad:
            parse_resource(
                {
                    "apiVersion": "agentrt.dev/v1",
                    "kind": "Tool",
                    "metadata": {"name": "t"},
                    "spec": spec,
                }
            )
        assert field in str(bad.value), (spec, bad.value)
