"""The ``http`` tool kind against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import MultiDict

from agentrt import Runtime
from agentrt._json import dumps, loads
from agentrt.errors import ToolError, UsageError
from agentrt.models.testserver import ModelTestServer
from agentrt.settings import Settings
from agentrt.spec import parse_resource
from agentrt.spec.resources import ToolSpec
from agentrt.state import SqliteStore
from agentrt.tools.base import ToolContext, ToolResult
from agentrt.tools.factory import ToolFactory, build_toolset
from agentrt.tools.http import REDACTED, HttpToolSet, SecretResolver
from tests.conftest import call, resources, rules
from tests.tools.sandbox.test_egress import host_proxy

CTX = ToolContext(run_id="run-1", step=3, call_id="call-7", namespace="default", session_id=None)


@dataclass
class Seen:
    """A request as the server received it."""

    method: str
    path: str  # raw, still percent-encoded
    query: MultiDict[str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Api:
    """The test server: records every request; answers from a per-path script, else echoes."""

    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    script: dict[str, deque[web.Response]] = field(default_factory=lambda: defaultdict(deque))
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def to(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith(path)]

    def answer(self, path: str, *responses: web.Response) -> None:
        self.script[path].extend(responses)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        body = await request.read()
        self.requests.append(
            Seen(request.method, path, MultiDict(request.query), dict(request.headers), body)
        )
        if self.script[path]:
            return self.script[path].popleft()
        if path == "/slow":
            await asyncio.wait_for(self.release.wait(), 30)
        if path == "/echo-headers":
            return web.json_response(dict(request.headers))
        echo = {"method": request.method, "path": path, "query": list(request.query.items())}
        if body:
            echo["json"] = loads(body)
        return web.json_response(echo)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    state = Api()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


class Sleeps:
    """Records the delays a tool set waits between attempts, without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def spec(http: dict[str, Any], **extra: Any) -> ToolSpec:
    return ToolSpec.model_validate({"kind": "http", "http": http, **extra})


async def call_tool(
    tool: HttpToolSet, arguments: dict[str, Any], ctx: ToolContext = CTX
) -> ToolResult:
    """One call, then close the tool set's session (on this test's event loop)."""
    try:
        return await tool.call(tool.name, arguments, ctx)
    finally:
        await tool.close()


# --- requests ------------------------------------------------------------------


async def test_get_fills_path_and_query(api: Api) -> None:
    tool = build_toolset("items", spec({"url": api.url + "/items/{item}/{kind}"}))
    assert isinstance(tool, HttpToolSet)
    (definition,) = await tool.definitions()
    assert definition.parameters == {
        "type": "object",
        "properties": {"item": {"type": "string"}, "kind": {"type": "string"}},
        "required": ["item", "kind"],
    }, "derived from the URL when the spec has no input_schema"
    arguments = {"item": "a b/../c", "kind": 7, "q": "x&y=z", "flag": True, "tag": ["t1", "t2"]}
    result = await call_tool(tool, arguments)
    assert not result.is_error
    (seen,) = api.requests
    assert seen.method == "GET"
    assert seen.path == "/items/a%20b%2F..%2Fc/7", "path values are percent-encoded"
    assert seen.query.getall("q") == ["x&y=z"]
    assert seen.query.getall("flag") == ["true"]
    assert seen.query.getall("tag") == ["t1", "t2"]
    assert seen.body == b""
    assert loads(result.output)["path"] == seen.path
    trace = result.trace
    assert trace["method"] == "GET" and trace["status"] == 200 and trace["attempts"] == 1
    assert trace["url"].startswith(api.url + "/items/a%20b%2F..%2Fc/7?")
    assert trace["response_bytes"] == len(result.output.encode())
    assert trace["duration_s"] >= 0


async def test_post_sends_json_body(api: Api) -> None:
    schema = {"type": "object", "properties": {"customer": {"type": "string"}}}
    tool = HttpToolSet(
        "order",
        spec(
            {"method": "POST", "url": api.url + "/orders/{customer}?source=agent"},
            input_schema=schema,
            description="Place an order",
        ),
    )
    (definition,) = await tool.definitions()
    assert definition.parameters == schema and definition.description == "Place an order"
    result = await call_tool(tool, {"customer": "c1", "qty": 2, "note": {"gift": True}})
    (seen,) = api.requests
    assert seen.method == "POST" and seen.path == "/orders/c1"
    assert list(seen.query.items()) == [("source", "agent")]
    assert seen.headers["Content-Type"] == "application/json"
    assert loads(seen.body) == {"qty": 2, "note": {"gift": True}}
    assert loads(result.output)["json"] == {"qty": 2, "note": {"gift": True}}


async def test_delete_and_body_none_use_the_query_string(api: Api) -> None:
    for method, body in (("DELETE", "json"), ("PUT", "none")):
        tool = HttpToolSet("t", spec({"method": method, "url": api.url + "/x", "body": body}))
        await call_tool(tool, {"id": 5})
    assert [(r.method, list(r.query.items()), r.body) for r in api.requests] == [
        ("DELETE", [("id", "5")], b""),
        ("PUT", [("id", "5")], b""),
    ]


async def test_missing_url_argument(api: Api) -> None:
    tool = HttpToolSet("t", spec({"url": api.url + "/items/{item}"}))
    with pytest.raises(ToolError, match="needs argument item for its URL"):
        await call_tool(tool, {"other": 1})
    assert api.requests == []


async def test_idempotency_key_on_every_attempt(api: Api, sleeps: Sleeps) -> None:
    api.answer("/flaky", web.Response(status=503))
    tool = HttpToolSet("t", spec({"url": api.url + "/flaky"}, idempotent=True), sleep=sleeps)
    await call_tool(tool, {})
    keys = [r.headers["Idempotency-Key"] for r in api.requests]
    assert keys == [CTX.idempotency_key] * 2 and CTX.idempotency_key == "run-1:3:call-7"


# --- responses -----------------------------------------------------------------


async def test_404_is_an_error_result_with_status_and_body(api: Api) -> None:
    api.answer("/missing", web.Response(status=404, text="no such item"))
    tool = HttpToolSet("t", spec({"url": api.url + "/missing"}, idempotent=True))
    result = await call_tool(tool, {})
    assert result.is_error
    assert result.output == "HTTP 404 Not Found: no such item"
    assert result.trace["status"] == 404
    assert len(api.requests) == 1, "a 404 is not retried"


async def test_output_is_capped_with_a_marker(api: Api) -> None:
    api.answer("/big", web.Response(text="é" * 5000))  # 10000 bytes
    tool = HttpToolSet("t", spec({"url": api.url + "/big"}, limits={"output_bytes": 101}))
    result = await call_tool(tool, {})
    text, _, marker = result.output.partition("\n")
    assert text == "é" * 50 + "\ufffd", "the cut multi-byte character is replaced"
    assert marker == "[truncated: the response is longer than 101 bytes]"
    assert result.trace["truncated"] is True and result.trace["response_bytes"] == 10000


async def test_redirect_is_not_followed(api: Api) -> None:
    api.answer("/old", web.Response(status=302, headers={"Location": api.url + "/new"}))
    tool = HttpToolSet("t", spec({"url": api.url + "/old"}))
    result = await call_tool(tool, {})
    assert not result.is_error and result.trace["status"] == 302
    assert result.output.startswith(f"HTTP 302 redirect to {api.url}/new (not followed)")
    assert api.to("/new") == []


# --- retries -------------------------------------------------------------------


async def test_idempotent_503_then_200_is_retried(api: Api, sleeps: Sleeps) -> None:
    api.answer("/flaky", web.Response(status=503, text="busy"), web.Response(text="ok"))
    tool = HttpToolSet("t", spec({"url": api.url + "/flaky"}, idempotent=True), sleep=sleeps)
    result = await call_tool(tool, {})
    assert (result.output, result.is_error, result.trace["attempts"]) == ("ok", False, 2)
    assert len(api.requests) == 2 and len(sleeps.delays) == 1


async def test_non_idempotent_is_never_retried(api: Api, sleeps: Sleeps) -> None:
    api.answer("/flaky", web.Response(status=503, text="busy"), web.Response(text="ok"))
    tool = HttpToolSet("t", spec({"method": "POST", "url": api.url + "/flaky"}), sleep=sleeps)
    result = await call_tool(tool, {"amount": 10})
    assert result.is_error and result.output == "HTTP 503 Service Unavailable: busy"
    assert len(api.requests) == 1 and sleeps.delays == []


async def test_retries_give_up_with_the_last_status(api: Api, sleeps: Sleeps) -> None:
    api.answer("/down", *(web.Response(status=500, text=f"fail {i}") for i in range(5)))
    tool = HttpToolSet(
        "t", spec({"url": api.url + "/down"}, idempotent=True), max_attempts=3, sleep=sleeps
    )
    result = await call_tool(tool, {})
    assert result.is_error and result.output.endswith(": fail 2")
    assert result.trace["attempts"] == 3 and len(api.requests) == 3


async def test_retry_after_is_honoured(api: Api, sleeps: Sleeps) -> None:
    api.answer(
        "/limited",
        web.Response(status=429, headers={"Retry-After": "7"}),
        web.Response(status=503, headers={"Retry-After": "1.5"}),
        web.Response(text="done"),
    )
    tool = HttpToolSet("t", spec({"url": api.url + "/limited"}, idempotent=True), sleep=sleeps)
    result = await call_tool(tool, {})
    assert result.output == "done"
    assert len(api.requests) == 3
    assert sleeps.delays == [7.0, 1.5], "the server's delays, not the backoff"


async def test_connection_error_is_retried_when_idempotent(sleeps: Sleeps) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens on the port any more
    tool = HttpToolSet(
        "t", spec({"url": f"http://127.0.0.1:{port}/x"}, idempotent=True), sleep=sleeps
    )
    with pytest.raises(ToolError, match="gave up after 3 attempts") as info:
        await call_tool(tool, {})
    assert not info.value.retryable, "the tool set retried already"
    assert len(sleeps.delays) == 2


async def test_timeout_is_an_error(api: Api, sleeps: Sleeps) -> None:
    tool = HttpToolSet("t", spec({"url": api.url + "/slow"}, timeout_s=0.2), sleep=sleeps)
    with pytest.raises(ToolError, match=r"GET .*/slow failed: timed out after 0.2s$"):
        await call_tool(tool, {})
    assert len(api.requests) == 1 and sleeps.delays == []


# --- secrets -------------------------------------------------------------------


def secret_spec(url: str, key_file: Path) -> dict[str, Any]:
    return {
        "url": url + "/echo-headers?key=${env:AGENTRT_TEST_QUERY_KEY}",
        "headers": {
            "Authorization": "Bearer ${env:AGENTRT_TEST_TOKEN}",
            "X-Api-Key": "${file:" + str(key_file) + "}",
            "X-Plain": "not secret",
        },
    }


async def test_secrets_are_sent_and_redacted(api: Api, tmp_path: Path) -> None:
    token, file_key, query_key = (f"tok-{secrets.token_hex(8)}" for _ in range(3))
    key_file = tmp_path / "key"
    key_file.write_text(file_key + "\n")
    environ = {"AGENTRT_TEST_TOKEN": token, "AGENTRT_TEST_QUERY_KEY": query_key + "/+"}
    tool = HttpToolSet("t", spec(secret_spec(api.url, key_file)), secrets=SecretResolver(environ))
    result = await call_tool(tool, {"q": "hello"})
    (seen,) = api.requests
    assert seen.headers["Authorization"] == f"Bearer {token}"
    assert seen.headers["X-Api-Key"] == file_key, "the trailing newline is stripped"
    assert seen.query.getall("key") == [query_key + "/+"]
    assert seen.query.getall("q") == ["hello"]
    # The server echoed the headers back: the result shows them redacted.
    echoed = loads(result.output)
    assert echoed["Authorization"] == f"Bearer {REDACTED}"
    assert echoed["X-Api-Key"] == REDACTED and echoed["X-Plain"] == "not secret"
    assert result.trace["url"] == f"{api.url}/echo-headers?key={REDACTED}&q=hello"
    recorded = dumps(result.to_dict())
    for value in (token, file_key, query_key):
        assert value.encode() not in recorded


async def test_missing_secrets_name_the_reference(api: Api, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    environ = {"AGENTRT_TEST_QUERY_KEY": "q"}
    tool = HttpToolSet("t", spec(secret_spec(api.url, key_file)), secrets=SecretResolver(environ))
    with pytest.raises(ToolError, match=r"secret \$\{env:AGENTRT_TEST_TOKEN\} is not available"):
        await call_tool(tool, {})
    environ["AGENTRT_TEST_TOKEN"] = "present"
    with pytest.raises(ToolError) as info:
        await call_tool(tool, {})
    assert info.value.message == (
        f"secret ${{file:{key_file}}} cannot be read: No such file or directory"
    )
    assert api.requests == [], "nothing is sent without every secret"


def test_unknown_reference_kind_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"header 'X-Key' has '\$\{vault:k\}'"):
        HttpToolSet("t", spec({"url": "http://h/x", "headers": {"X-Key": "${vault:k}"}}))


async def test_secrets_never_reach_the_log_or_the_store(
    api: Api, model_server: ModelTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, file_key, query_key = (f"tok-{secrets.token_hex(8)}" for _ in range(3))
    monkeypatch.setenv("AGENTRT_TEST_TOKEN", token)
    monkeypatch.setenv("AGENTRT_TEST_QUERY_KEY", query_key)
    key_file = tmp_path / "key"
    key_file.write_text(file_key)
    model_server.set_rules(
        rules({"tool_calls": [call("fetch", q="news")]}, {"content": "got {last_tool_result}"})
    )
    tool = {
        "apiVersion": "agentrt.dev/v1",
        "kind": "Tool",
        "metadata": {"name": "fetch"},
        "spec": {"kind": "http", "http": secret_spec(api.url, key_file), "idempotent": True},
    }
    db_dir = tmp_path / "db"
    store = await SqliteStore.open(db_dir / "agentrt.db")
    try:
        async with Runtime(store) as rt:
            await rt.apply(
                [*resources(model_server.url, agent={"tools": ["fetch"]}), parse_resource(tool)]
            )
            result = await rt.run("bot", "what is new?")
            log = await rt.export_run(result.run_id)
    finally:
        await store.close()
    assert result.ok, result
    output = result.output or ""
    (seen,) = api.requests
    assert seen.headers["Authorization"] == f"Bearer {token}"
    assert seen.headers["X-Api-Key"] == file_key
    # The server echoed the secret headers: the model got them redacted.
    assert loads(output.removeprefix("got "))["Authorization"] == f"Bearer {REDACTED}"
    (recorded,) = [e["data"] for e in log["events"] if e["type"] == "tool.result"]
    assert recorded["trace"]["url"] == f"{api.url}/echo-headers?key={REDACTED}&q=news"
    exported = dumps(log)
    seen_by_model = dumps(model_server.requests)
    stored = b"".join(p.read_bytes() for p in sorted(db_dir.iterdir()) if p.is_file())
    assert stored, "the store's files were read"
    for value in (token, file_key, query_key):
        assert value not in output
        assert value.encode() not in exported
        assert value.encode() not in seen_by_model
        assert value.encode() not in stored


async def test_secret_echoed_across_the_cut_is_redacted_whole(api: Api) -> None:
    token = f"tok-{secrets.token_hex(8)}"
    api.answer("/echo", web.Response(text="x" * 95 + token + "y" * 100))
    tool = HttpToolSet(
        "t",
        spec(
            {"url": api.url + "/echo", "headers": {"X-Key": "${env:K}"}},
            limits={"output_bytes": 100},
        ),
        secrets=SecretResolver({"K": token}),
    )
    result = await call_tool(tool, {})
    assert result.output.startswith("x" * 95 + REDACTED[:5] + "\n[truncated")
    assert all(token[i : i + 4] not in result.output for i in range(4, len(token) - 3))


async def test_a_multi_line_secret_is_refused_without_showing_it(api: Api, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("first-line-secret\nsecond-line-secret\n")
    tool = HttpToolSet(
        "t", spec({"url": api.url + "/x", "headers": {"X-Key": f"${{file:{key_file}}}"}})
    )
    with pytest.raises(ToolError) as info:
        await call_tool(tool, {})
    assert info.value.message == "header 'X-Key': a secret it references spans several lines"
    assert api.requests == []


async def test_requests_go_through_the_proxy_the_environment_names(api: Api) -> None:
    port = int(api.url.rsplit(":", 1)[1])
    proxy = await host_proxy(f"127.0.0.1:{port}")
    try:
        proxied = {"HTTP_PROXY": f"http://127.0.0.1:{proxy.port}"}
        for environ in (proxied, {**proxied, "NO_PROXY": "127.0.0.1"}):
            tool = HttpToolSet("ping", spec({"url": f"{api.url}/ping"}), environ=environ)
            try:
                result = await tool.call("ping", {}, CTX)
            finally:
                await tool.close()
            assert not result.is_error and loads(result.output)["path"] == "/ping"
    finally:
        await proxy.close()
    assert len(api.to("/ping")) == 2
    assert [(a.host, a.port, a.method) for a in proxy.attempts] == [("127.0.0.1", port, "GET")]


async def test_secrets_come_from_the_settings_not_the_process(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tool factory hands the tool the Runtime's settings; the process's own
    # environment, read nowhere but in Settings.from_env, does not leak in.
    monkeypatch.setenv("AGENTRT_TEST_TOKEN", "from-the-process")
    settings = Settings(
        environ={"AGENTRT_TEST_TOKEN": "from-the-settings", "AGENTRT_TEST_QUERY_KEY": "q"}
    )
    factory = ToolFactory(settings)
    tool = factory.build("t", spec(secret_spec(api.url, tmp_path / "key")))
    (tmp_path / "key").write_text("k")
    try:
        await tool.call("t", {}, CTX)
    finally:
        await tool.close()
        await factory.close()
    (seen,) = api.requests
    assert seen.headers["Authorization"] == "Bearer from-the-settings"
    bare = build_toolset("t", spec(secret_spec(api.url, tmp_path / "key")))
    with pytest.raises(ToolError, match="is not set"):
        await call_tool(bare, {})  # type: ignore[arg-type]
