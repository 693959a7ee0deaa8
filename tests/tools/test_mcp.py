"""The ``mcp`` tool kind against real MCP servers written with the official SDK.

``mcp_servers/calc_stdio.py`` runs as a child process over stdio;
``mcp_servers/calc_http.py`` is started here as a streamable HTTP server on a
free port. No mocks: every call crosses a real transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from mcp import Client

from agentrt import Runtime
from agentrt.cli.main import main
from agentrt.engine import events as ev
from agentrt.errors import ToolError, UsageError
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import Resource, parse_resource
from agentrt.spec.resources import ToolSpec
from agentrt.state import SqliteStore
from agentrt.tools.base import ToolContext
from agentrt.tools.factory import build_toolset
from agentrt.tools.mcp import IDEMPOTENCY_META_KEY, McpToolSet
from tests.conftest import call, resources, rules
from tests.engine.test_offer import LONG, hashed

SERVERS = Path(__file__).parent / "mcp_servers"
STDIO = [sys.executable, str(SERVERS / "calc_stdio.py")]
CTX = ToolContext("run-1", 3, "call_0", "default", None)
BASE_TOOLS = ["add", "echo", "pid", "meta", "stats", "enable_extra", "fail", "picture", "crash"]


def mcp_spec(**mcp: Any) -> ToolSpec:
    return ToolSpec.model_validate({"kind": "mcp", "mcp": mcp})


def with_mcp(base_url: str, **mcp: Any) -> list[Resource]:
    """The conftest resources, with Agent ``bot`` using MCP Tool ``calc``."""
    tool = parse_resource(
        {
            "apiVersion": "agentrt.dev/v1",
            "kind": "Tool",
            "metadata": {"name": "calc", "namespace": "default"},
            "spec": {"kind": "mcp", "mcp": mcp},
        }
    )
    return [*resources(base_url, agent={"tools": ["calc"]}), tool]


async def received(url: str) -> list[dict[str, Any]]:
    """What ``calc_http.py`` at ``url`` has received: method, path and session id."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(url.removesuffix("/mcp") + "/requests") as resp,
    ):
        answer: list[dict[str, Any]] = await resp.json()
    return answer


def offered(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools", [])]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def eventually(predicate: Any, what: str) -> None:
    """Wait for ``predicate()`` (a bounded poll, not a timing assertion)."""
    for _ in range(500):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    """``calc_http.py`` on a free port; yields its MCP URL and stops it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(SERVERS / "calc_http.py"), str(port)])
    try:
        for _ in range(1000):
            if proc.poll() is not None:
                raise RuntimeError(f"calc_http.py exited with {proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.02)
        else:
            raise RuntimeError("calc_http.py did not listen")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def http_url() -> Iterator[str]:
    with http_server() as url:
        yield url


@pytest.fixture
async def stdio_set() -> AsyncIterator[McpToolSet]:
    toolset = McpToolSet("calc", mcp_spec(command=STDIO))
    try:
        yield toolset
    finally:
        await toolset.close()


# --- the tool set on its own ---------------------------------------------------


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_stdio_lists_and_calls(era: str) -> None:
    toolset = McpToolSet("calc", mcp_spec(command=STDIO))
    toolset._mode = era  # "legacy": the initialize handshake of pre-2026 servers
    try:
        defs = {d.name: d for d in await toolset.definitions()}
        assert list(defs) == BASE_TOOLS
        assert defs["add"].description == "Add two integers."
        assert defs["add"].parameters["required"] == ["a", "b"]
        added = await toolset.call("add", {"a": 2, "b": 3}, CTX)
        assert added.output == "5" and not added.is_error
        assert added.trace["server"].endswith("calc_stdio.py")
        assert added.trace["transport"] == "stdio" and added.trace["tool"] == "add"
        assert added.trace["duration_s"] >= 0
        meta = json.loads((await toolset.call("meta", {}, CTX)).output)
        assert meta[IDEMPOTENCY_META_KEY] == "run-1:3:call_0"
        picture = await toolset.call("picture", {}, CTX)
        assert picture.output == "a picture\n[image/png 67 bytes]"
        assert (await toolset.lookup("add", CTX)) is None
    finally:
        await toolset.close()


async def test_http_lists_and_calls(http_url: str) -> None:
    toolset = build_toolset("calc", mcp_spec(url=http_url))
    assert isinstance(toolset, McpToolSet) and toolset.dynamic
    try:
        names = [d.name for d in await toolset.definitions()]
        assert names == ["add", "echo", "pid", "enable_extra"]
        result = await toolset.call("add", {"a": 20, "b": 22}, CTX)
        assert result.output == "42" and not result.is_error
        assert result.trace["server"] == http_url
        assert result.trace["transport"] == "streamable-http"
    finally:
        await toolset.close()


async def test_http_session_is_ended_on_the_server_on_close(
    http_url: str,
    store: SqliteStore,
    model_server: ModelTestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Handshake-era servers (every pre-2026 one) give each session an id and keep
    # its state until the client ends it with a DELETE.
    monkeypatch.setattr(McpToolSet, "_mode", "legacy")
    model_server.set_rules(rules({"tool_calls": [call("add", a=1, b=1)]}, {"content": "done"}))
    async with Runtime(store) as rt:
        await rt.apply(with_mcp(model_server.url, url=http_url))
        assert (await rt.run("bot", "sum")).output == "done"
        seen = await received(http_url)
        sessions = {r["session"] for r in seen if r["session"]}
        assert len(sessions) == 1 and "DELETE" not in [r["method"] for r in seen]
    deletes = [r for r in await received(http_url) if r["method"] == "DELETE"]
    assert deletes == [{"method": "DELETE", "path": "/mcp", "session": sessions.pop()}]


async def test_allow_list_and_env_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = tmp_path / "starts"
    monkeypatch.setenv("CALC_STARTS_FILE", str(starts))
    spec = mcp_spec(
        command=STDIO, tools=["add", "pid"], env={"CALC_STARTS": "${env:CALC_STARTS_FILE}"}
    )
    toolset = McpToolSet("calc", spec, environ=os.environ)
    try:
        assert [d.name for d in await toolset.definitions()] == ["add", "pid"]
        pid = (await toolset.call("pid", {}, CTX)).output
        assert starts.read_text().split() == [pid]  # the server saw the resolved value
        with pytest.raises(ToolError, match="not offered"):
            await toolset.call("echo", {"text": "x"}, CTX)
    finally:
        await toolset.close()
    missing = McpToolSet(
        "calc",
        mcp_spec(command=STDIO, env={"TOKEN": "secret-${env:NO_SUCH_VAR_X}"}),
        environ=os.environ,
    )
    with pytest.raises(ToolError, match="not set: NO_SUCH_VAR_X") as failed:
        await missing.definitions()
    assert "secret" not in str(failed.value)


async def test_parallel_first_use_starts_one_server(stdio_set: McpToolSet) -> None:
    results = await asyncio.gather(*(stdio_set.call("pid", {}, CTX) for _ in range(8)))
    assert len({r.output for r in results}) == 1
    echoed = await asyncio.gather(
        *(stdio_set.call("echo", {"text": str(i)}, CTX) for i in range(20))
    )
    assert [r.output for r in echoed] == [str(i) for i in range(20)]


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_tool_list_is_cached_until_it_may_have_changed(era: str) -> None:
    toolset = McpToolSet("calc", mcp_spec(command=STDIO))
    toolset._mode = era
    lists = lambda: toolset.call("stats", {}, CTX)  # noqa: E731  (tools/list served so far)
    try:
        await toolset.definitions()
        await toolset.definitions()
        assert (await lists()).output == "1"  # the server announces changes: one listing
        await toolset.definitions()  # a call may have changed the list: listed again
        await toolset.definitions()
        assert (await lists()).output == "2"
        await toolset.call("enable_extra", {}, CTX)
        assert "multiply" in [d.name for d in await toolset.definitions()]
        assert (await toolset.call("multiply", {"a": 6, "b": 7}, CTX)).output == "42"
    finally:
        await toolset.close()


async def test_server_without_announcements_is_listed_every_time() -> None:
    toolset = McpToolSet("calc", mcp_spec(command=[*STDIO, "--quiet"]))
    try:
        for _ in range(3):
            await toolset.definitions()
        assert (await toolset.call("stats", {}, CTX)).output == "3"
    finally:
        await toolset.close()


async def test_tool_added_by_another_client_is_seen(http_url: str) -> None:
    toolset = McpToolSet("calc", mcp_spec(url=http_url))
    try:
        assert "multiply" not in [d.name for d in await toolset.definitions()]
        async with Client(http_url) as other:  # a change the runtime did not cause
            await other.call_tool("enable_extra", {})

        async def seen() -> bool:
            return "multiply" in [d.name for d in await toolset.definitions()]

        await eventually(seen, "the list_changed announcement")
        assert (await toolset.call("multiply", {"a": 3, "b": 4}, CTX)).output == "12"
    finally:
        await toolset.close()


async def test_tool_error_and_crash_are_tool_errors(stdio_set: McpToolSet) -> None:
    failed = await stdio_set.call("fail", {"message": "bad input"}, CTX)
    assert failed.is_error and failed.output == "bad input"
    first = (await stdio_set.call("pid", {}, CTX)).output
    with pytest.raises(ToolError, match="connection closed while calling 'crash'") as crash:
        await stdio_set.call("crash", {}, CTX)
    assert crash.value.retryable
    assert await _reaped(int(first))
    second = (await stdio_set.call("pid", {}, CTX)).output  # restarted on next use
    assert second != first


async def _reaped(pid: int) -> bool:
    async def gone() -> bool:
        return not alive(pid)

    await eventually(gone, f"process {pid} to exit")
    return True


async def test_server_that_cannot_start() -> None:
    toolset = McpToolSet("calc", mcp_spec(command=["/nonexistent/mcp-server"]))
    with pytest.raises(ToolError, match=r"MCP server 'calc' \(/nonexistent/mcp-server\) could not"):
        await toolset.definitions()
    await toolset.close()


async def test_server_that_never_answers() -> None:
    silent = [sys.executable, "-c", "import sys; sys.stdin.read()"]  # reads, never answers
    spec = ToolSpec.model_validate({"kind": "mcp", "mcp": {"command": silent}, "timeout_s": 0.5})
    toolset = McpToolSet("calc", spec)
    with pytest.raises(ToolError, match=r"could not be started: no answer within 0\.5s"):
        await toolset.definitions()
    await toolset.close()


def test_missing_sdk_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # what an absent package looks like
    monkeypatch.delitem(sys.modules, "agentrt.tools.mcp")
    with pytest.raises(UsageError, match=r'pip install "agentrt\[mcp\]"'):
        importlib.import_module("agentrt.tools.mcp")
    with pytest.raises(UsageError, match=r'pip install "agentrt\[mcp\]"'):
        build_toolset("calc", mcp_spec(command=STDIO))


# --- end to end: Runtime, SQLite store, the OpenAI-compatible test server -------


async def test_agent_discovers_and_calls_mcp_tools(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": "sum is {last_tool_result}"})
    )
    async with Runtime(store) as rt:
        await rt.apply(with_mcp(model_server.url, command=STDIO))
        result = await rt.run("bot", "add")
    assert result.status == "succeeded" and result.output == "sum is 5"
    assert offered(model_server.requests[0]) == BASE_TOOLS
    events = await store.read_events(result.run_id)
    calls = [e for e in events if e.type == ev.MODEL_CALL]
    assert calls[0].data["offered"] == {"calc": BASE_TOOLS}
    (tool_result,) = [e for e in events if e.type == ev.TOOL_RESULT]
    assert tool_result.data["output"] == "5"
    assert tool_result.data["trace"]["transport"] == "stdio"


async def test_tool_added_while_running_is_offered_next_step_and_next_run(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    again = rules(
        {"tool_calls": [call("multiply", a=2, b=5)]},
        {"content": "{last_tool_result}"},
        match="again",
    )
    extend = rules(
        {"tool_calls": [call("enable_extra")]},
        {"tool_calls": [call("multiply", a=6, b=7)]},
        {"content": "product {last_tool_result}"},
    )
    model_server.set_rules(again + extend)
    async with Runtime(store) as rt:
        await rt.apply(with_mcp(model_server.url, command=STDIO))
        first = await rt.run("bot", "extend")
        second = await rt.run("bot", "again")
    assert first.output == "product 42" and second.output == "10"
    requests = model_server.requests
    assert "multiply" not in offered(requests[0])
    assert offered(requests[1]) == [*BASE_TOOLS, "multiply"]  # same run, next model call
    assert "multiply" in offered(requests[3])  # next run, same server process


async def test_server_started_once_reused_and_stopped_on_close(
    store: SqliteStore,
    model_server: ModelTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts = tmp_path / "starts"
    monkeypatch.setenv("CALC_STARTS_FILE", str(starts))
    model_server.set_rules(rules({"tool_calls": [call("pid")]}, {"content": "{last_tool_result}"}))
    async with Runtime(store) as rt:
        await rt.apply(
            with_mcp(
                model_server.url, command=STDIO, env={"CALC_STARTS": "${env:CALC_STARTS_FILE}"}
            )
        )
        first = await rt.run("bot", "who")
        second = await rt.run("bot", "who again")
        assert first.output == second.output
        pid = int(first.output or "0")
        assert alive(pid)
    assert starts.read_text().split() == [str(pid)]
    assert await _reaped(pid)


async def test_a_changed_tool_stops_its_old_server(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    """Re-applied with another spec, a Tool gets a new server; the old process is
    stopped once no run uses it, not kept alive until the runtime closes."""
    model_server.set_rules(rules({"tool_calls": [call("pid")]}, {"content": "{last_tool_result}"}))
    async with Runtime(store) as rt:
        await rt.apply(with_mcp(model_server.url, command=STDIO))
        old = int((await rt.run("bot", "who")).output or "0")
        assert alive(old)
        await rt.apply(with_mcp(model_server.url, command=STDIO, env={"CHANGED": "1"}))
        new = int((await rt.run("bot", "who now")).output or "0")
        assert new != old and alive(new)
        assert await _reaped(old), "the changed Tool's old server process still runs"
        again = int((await rt.run("bot", "who again")).output or "0")
        assert again == new  # the new spec's server is shared by the runs after it
    assert await _reaped(new)


async def test_replay_does_not_contact_the_server(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        rules({"tool_calls": [call("add", a=1, b=2)]}, {"content": "got {last_tool_result}"})
    )
    with http_server() as url:
        async with Runtime(store) as rt:
            await rt.apply(with_mcp(model_server.url, url=url))
            original = await rt.run("bot", "sum")
    assert original.output == "got 3"
    # The server is gone: replay must rebuild every step from the log.
    async with Runtime(store) as rt:
        replayed = await rt.replay(original.run_id)
    assert replayed.status == "succeeded" and replayed.output == original.output
    assert len(model_server.requests) == 2


async def test_tool_error_and_crash_do_not_end_the_run(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        rules(
            {"tool_calls": [call("fail", message="bad input")]},
            {"tool_calls": [call("crash")]},
            {"tool_calls": [call("add", a=4, b=4)]},
            {"content": "recovered {last_tool_result}"},
        )
    )
    async with Runtime(store) as rt:
        await rt.apply(with_mcp(model_server.url, command=STDIO))
        result = await rt.run("bot", "go")
    assert result.status == "succeeded" and result.output == "recovered 8"
    outcomes = [
        (e.data["output"], e.data.get("error", False))
        for e in await store.read_events(result.run_id)
        if e.type == ev.TOOL_RESULT
    ]
    assert outcomes[0] == ("bad input", True)
    assert outcomes[1][1] and "connection closed while calling 'crash'" in outcomes[1][0]
    assert outcomes[2] == ("8", False)


# --- names models refuse, clashes, task-only tools ------------------------------

WHY = (
    "Tool odd: tool 'long_job' is left out: it can only be called as an MCP task "
    "(execution.taskSupport: required), which agentrt's MCP client does not support"
)
ODD = [sys.executable, str(SERVERS / "odd_stdio.py")]
# odd_stdio.py's tools as the model sees them (the rules: tests/engine/test_offer.py).
FILES_DOT_READ = hashed("files_read", "files.read")
ODD_NAMES = {
    FILES_DOT_READ: "files.read",
    "files_read": "files_read",
    "ns_echo": "ns/echo",
    "read_file": "read file",
    hashed(LONG, LONG + "now"): LONG + "now",
    hashed(LONG, LONG + "later"): LONG + "later",
    "add": "add",
    "long_job": "long_job",
    "quick_job": "quick_job",
}


def mcp_tool(name: str, spec: dict[str, Any] | None = None, **mcp: Any) -> Resource:
    return parse_resource(
        {
            "apiVersion": "agentrt.dev/v1",
            "kind": "Tool",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"kind": "mcp", "mcp": mcp, **(spec or {})},
        }
    )


def served_as(result: str) -> str:
    """The name odd_stdio.py was called by (its answer is JSON)."""
    return str(json.loads(result)["tool"])


async def test_names_models_refuse_are_offered_valid_and_reach_the_server_as_given(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        rules(
            {"tool_calls": [call(n, text="x") for n in list(ODD_NAMES)[:6]]},
            {"content": "done"},
        )
    )
    async with Runtime(store) as rt:
        await rt.apply(
            [*resources(model_server.url, agent={"tools": ["odd"]}), mcp_tool("odd", command=ODD)]
        )
        result = await rt.run("bot", "go")
    # The test server refuses invalid names with 400, as OpenAI does.
    assert result.status == "succeeded", result.reason
    assert offered(model_server.requests[0]) == list(ODD_NAMES)
    events = await store.read_events(result.run_id)
    (first, _) = [e for e in events if e.type == ev.MODEL_CALL]
    assert first.data["offered"] == {"odd": list(ODD_NAMES.values())}
    assert first.data["renamed"] == {
        model: ["odd", own] for model, own in ODD_NAMES.items() if model != own
    }
    served = [served_as(e.data["output"]) for e in events if e.type == ev.TOOL_RESULT]
    assert served == list(ODD_NAMES.values())[:6]
    async with Runtime(store) as rt:  # replay resolves the recorded names, asking no server
        replayed = await rt.replay(result.run_id)
    assert replayed.status == "succeeded" and replayed.output == "done"


async def test_two_tools_offering_one_name_are_both_offered_qualified(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        rules(
            {"tool_calls": [call("calc__add", a=2, b=3), call("odd__add", text="y")]},
            {"tool_calls": [call("calc__add", a=1, b=1)]},
            {"content": "done"},
        )
    )
    async with Runtime(store) as rt:
        await rt.apply(
            [
                *resources(model_server.url, agent={"tools": ["calc", "odd"]}),
                mcp_tool("calc", command=STDIO),
                mcp_tool("odd", command=ODD, tools=["add"]),
            ]
        )
        result = await rt.run("bot", "go")
    assert result.status == "succeeded", result.reason
    names = offered(model_server.requests[0])
    assert "add" not in names and {"calc__add", "odd__add"} <= set(names)
    events = await store.read_events(result.run_id)
    outputs = {e.step: e.data["output"] for e in events if e.type == ev.TOOL_RESULT}
    assert outputs[2] == "5" and served_as(outputs[3]) == "add" and outputs[5] == "2"
    notices = [e.data.get("notices") for e in events if e.type == ev.MODEL_CALL]
    clash = "tool 'add' is offered by Tools calc, odd: offered as calc__add, odd__add"
    assert notices == [[clash], None, None]  # reported once per run, not at every step


async def test_a_renamed_tool_resumes_by_its_recorded_name(
    store: SqliteStore, model_server: ModelTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server stops listing files_read before the run resumes: the rules alone
    # would now name files.read "files_read", but the model asked for FILES_DOT_READ.
    monkeypatch.setenv("ODD_HIDE", "")
    model_server.set_rules(
        rules({"tool_calls": [call(FILES_DOT_READ, text="a")]}, {"content": "{last_tool_result}"})
    )
    odd = mcp_tool(
        "odd", {"approval": {"required": True}}, command=ODD, env={"ODD_HIDE": "${env:ODD_HIDE}"}
    )
    async with Runtime(store) as rt:
        await rt.apply([*resources(model_server.url, agent={"tools": ["odd"]}), odd])
        waiting = await rt.run("bot", "read")
    assert waiting.status == "waiting_approval"
    monkeypatch.setenv("ODD_HIDE", "files_read")
    hiding = McpToolSet("odd", odd.spec, environ=os.environ)  # type: ignore[arg-type]
    try:
        assert "files_read" not in [d.name for d in await hiding.definitions()]
    finally:
        await hiding.close()
    async with Runtime(store) as rt:
        result = await rt.approve(waiting.run_id, 2, approved=True)
    assert result.status == "succeeded", result.reason
    assert served_as(result.output or "") == "files.read"


async def test_task_only_tools_are_left_out_and_said_so(
    store: SqliteStore,
    model_server: ModelTestServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # execution.taskSupport reaches clients of handshake-era (2025-11-25) servers.
    monkeypatch.setattr(McpToolSet, "_mode", "legacy")
    tasks = ["long_job", "quick_job"]
    model_server.set_rules(
        rules({"tool_calls": [call("quick_job", text="q")]}, {"content": "done"})
    )
    async with Runtime(store) as rt:
        await rt.apply(
            [
                *resources(model_server.url, agent={"tools": ["odd"]}),
                mcp_tool("odd", command=ODD, tools=tasks),
            ]
        )
        result = await rt.run("bot", "go")
    assert result.status == "succeeded", result.reason
    names = offered(model_server.requests[0])
    assert "long_job" not in names and "quick_job" in names
    events = await store.read_events(result.run_id)
    assert [e.data.get("notices") for e in events if e.type == ev.MODEL_CALL] == [[WHY], None]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"run {result.run_id}: {WHY}"
    ]


def test_agentrt_run_and_runs_show_say_what_was_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(McpToolSet, "_mode", "legacy")
    monkeypatch.setenv("AGENTRT_STORE", str(tmp_path / "cli.db"))
    monkeypatch.setenv("NO_COLOR", "1")
    server = ModelTestServer(
        rules({"tool_calls": [call("quick_job", text="q")]}, {"content": "done"})
    )
    url = server.start_in_thread()
    try:
        docs = [
            r.model_dump(mode="json", exclude_defaults=True)
            for r in [
                *resources(url, agent={"tools": ["odd"]}),
                mcp_tool("odd", command=ODD, tools=["long_job", "quick_job"]),
            ]
        ]
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump_all(docs))
        assert main(["apply", "-f", str(spec)]) == 0
        capsys.readouterr()
        assert main(["run", "bot", "go"]) == 0
        live = capsys.readouterr().out
        assert f"step   1  notice: {WHY}" in live and live.count("long_job") == 1
        assert main(["runs", "list", "--json"]) == 0
        (run,) = json.loads(capsys.readouterr().out)
        assert main(["runs", "show", run["id"]]) == 0
        assert f"step 1  notice: {WHY}" in capsys.readouterr().out
    finally:
        server.stop_thread()
