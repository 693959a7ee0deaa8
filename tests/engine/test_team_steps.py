"""A team run's own steps, its tool nodes and its routes' model calls, pass the same
gateway as an agent's loop steps: one idempotency key per node instance, hooks, quotas,
budgets, retries and fallbacks. Real Runtime and SQLite, a real HTTP endpoint for the
tool, the HTTP test model for agents and routes."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from agentrt import HookSet, Runtime
from agentrt.engine import events as ev
from agentrt.engine.team_steps import TeamContext
from agentrt.models.base import ModelRequest, ModelResponse, ToolCall
from agentrt.models.testserver import ModelTestServer
from agentrt.spec.loader import parse_resource
from agentrt.spec.resources import Resource
from agentrt.state import SqliteStore
from agentrt.tools.base import ToolResult
from tests.conftest import resources
from tests.engine.test_crash_resume import _cli, _env, _spawn
from tests.engine.test_team_run import agents, script, team


class KeyServer:
    """``POST /pay`` in its own thread: records each request's ``Idempotency-Key``, holds
    the first ``hold`` requests (until stopped), answers 503 to the first ``failures``."""

    def __init__(self, *, failures: int = 0, hold: int = 0) -> None:
        self.keys: list[str] = []
        self.url = ""
        self._failures, self._hold = failures, hold
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    async def _pay(self, request: web.Request) -> web.Response:
        n = len(self.keys)
        self.keys.append(request.headers.get("Idempotency-Key", ""))
        if n < self._hold and self._release is not None:
            await asyncio.wait_for(self._release.wait(), 60)
        if n < self._failures:
            return web.Response(status=503, text="busy, try again")
        return web.json_response({"paid": True})

    def __enter__(self) -> KeyServer:
        ready = threading.Event()

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            self._release = asyncio.Event()
            app = web.Application()
            app.router.add_post("/pay", self._pay)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert ready.wait(10), "the key server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._release is not None and self._thread
        self._loop.call_soon_threadsafe(self._release.set)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def doc(kind: str, name: str, spec: dict[str, Any]) -> Resource:
    return parse_resource(
        {"apiVersion": "agentrt.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )


def pay_tool(url: str, **spec: Any) -> Resource:
    """An ``http`` Tool that POSTs to the key server."""
    return doc("Tool", "pay", {"kind": "http", "http": {"method": "POST", "url": f"{url}/pay"},
                               **spec})  # fmt: skip


PAY_NODE = {"name": "pay", "tool": "pay", "input": '{"amount": 5}'}


async def test_a_retried_tool_node_sends_the_same_key_on_every_attempt(
    store: SqliteStore,
) -> None:
    node = {**PAY_NODE, "retry": {"max_attempts": 3, "initial_backoff_s": 0}}
    with KeyServer(failures=2) as server:
        async with Runtime(store) as rt:
            await rt.apply([pay_tool(server.url), team("till", {"nodes": [node]})])
            result = await rt.run("till", "go")
            replayed = await rt.replay(result.run_id)
        keys = list(server.keys)
    assert result.status == "succeeded", result.reason
    key = f"{result.run_id}/pay/1/0"
    assert keys == [key, key, key]  # two 503s, then the call that paid
    events = await store.read_events(result.run_id)
    started = [e.data for e in events if e.type == ev.NODE_STARTED]
    assert [d["attempt"] for d in started] == [1, 2, 3]
    assert {d["key"] for d in started} == {key}
    # Each attempt is a tool step of the team run, under that key, counted as a call.
    calls = [e for e in events if e.type == ev.TOOL_CALL]
    assert [e.data["key"] for e in calls] == [key, key, key]
    assert [e.step for e in calls] == [d["step"] for d in started]
    assert len({e.step for e in calls}) == 3
    assert result.usage.tool_calls == 3
    assert (replayed.status, replayed.output) == ("succeeded", result.output)


async def _apply(db: Path, docs: list[Resource]) -> None:
    store = await SqliteStore.open(db)
    try:
        async with Runtime(store, resume_interrupted=False) as rt:
            await rt.apply(docs)
    finally:
        await store.close()


async def _team_run(db: Path) -> str | None:
    store = await SqliteStore.open(db)
    try:
        runs = [r for r in await store.list_runs(limit=10) if r.agent == "till"]
        return runs[0].id if runs else None
    finally:
        await store.close()


def test_a_tool_node_resumed_after_sigkill_sends_the_same_key(tmp_path: Path) -> None:
    db, effects = tmp_path / "agentrt.db", tmp_path / "effects.txt"
    with KeyServer(hold=1) as server:
        # Idempotent: a call interrupted by the crash is made again on resume.
        docs = [pay_tool(server.url, idempotent=True), team("till", {"nodes": [PAY_NODE]})]
        asyncio.run(_apply(db, docs))
        child = _spawn(db, "run", "till", "go", "-q", env=_env(effects))
        deadline = time.monotonic() + 60
        while not server.keys:  # the call reached the server, which holds it
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the tool was never called"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.communicate()
        run_id = asyncio.run(_team_run(db))
        assert run_id is not None
        resumed = _cli(db, "resume", run_id, "--json", env=_env(effects))
        keys = list(server.keys)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    assert keys == [f"{run_id}/pay/1/0"] * 2


# --- tool nodes: hooks, quotas, budgets -----------------------------------------------


async def test_a_tool_node_passes_the_runtimes_tool_hooks(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    seen: list[tuple[str, str, int]] = []

    def before(ctx: Any, call: ToolCall) -> None:
        assert isinstance(ctx, TeamContext)
        seen.append((ctx.run_id, call.name, ctx.step))

    def after(ctx: Any, result: ToolResult) -> ToolResult:
        return ToolResult(f"{result.output} (checked)", result.is_error, result.trace)

    hooks = HookSet().add("before_tool", before).add("after_tool", after)
    spec = {"nodes": [{"name": "sum", "tool": "add", "input": '{"a": 2, "b": 40}'}]}
    async with Runtime(store, hooks=hooks) as rt:
        await rt.apply([*resources(model_server.url, tools=["add"]), team("adder", spec)])
        result = await rt.run("adder", "go")
    assert result.status == "succeeded", result.reason
    [step] = [e.step for e in await store.read_events(result.run_id) if e.type == ev.TOOL_CALL]
    assert seen == [(result.run_id, "add", step)]
    assert result.output == "42 (checked)"  # what after_tool returned is the node's output


async def test_tool_nodes_count_against_their_tools_quota(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    # Three nodes of a Tool that allows two calls per run, all three at once.
    nodes = [{"name": f"n{i}", "tool": "add_quota", "input": '{"a": 1, "b": 1}', "output": "sums",
              "retry": {"max_attempts": 3, "initial_backoff_s": 0}} for i in range(3)]  # fmt: skip
    spec = {"entry": ["n0", "n1", "n2"], "concurrency": 3, "nodes": nodes,
            "state": {"sums": {"reducer": "append"}}}  # fmt: skip
    async with Runtime(store) as rt:
        await rt.apply([*resources(model_server.url, tools=["add_quota"]), team("three", spec)])
        result = await rt.run("three", "go")
        counted = await store.count_tool_calls(namespace="default", tool="add_quota")
    assert result.status == "failed"
    assert "quota exceeded: Tool 'add_quota' allows 2 calls per run (quotas.per_run)" in (
        result.reason or ""
    )
    assert counted == 2  # the refused call was not made, and not retried
    events = await store.read_events(result.run_id)
    assert sum(1 for e in events if e.type == ev.NODE_STARTED) == 3


async def test_tool_nodes_spend_the_teams_tool_call_budget(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    spec = {"budgets": {"max_tool_calls": 1},
            "nodes": [{"name": "a", "tool": "add", "input": '{"a": 1, "b": 2}'},
                      {"name": "b", "tool": "add", "after": ["a"], "input": '{"a": 3, "b": 4}'}]}  # fmt: skip
    async with Runtime(store) as rt:
        await rt.apply([*resources(model_server.url, tools=["add"]), team("pair", spec)])
        result = await rt.run("pair", "go")
        replayed = await rt.replay(result.run_id)
    assert result.status == "budget_exhausted"
    assert "budgets.max_tool_calls=1 would be exceeded (1 made, 1 more requested)" in (
        result.reason or ""
    )
    assert result.usage.tool_calls == 1
    assert replayed.status == "budget_exhausted"


# --- routes: hooks, budgets, fallbacks ------------------------------------------------


def chooser(url: str, **spec: Any) -> Resource:
    return doc("Model", "chooser", {"provider": "openai", "base_url": url, "max_retries": 0,
                                    **spec})  # fmt: skip


ROUTER = {"strategy": {"kind": "router", "members": ["billing", "support"], "model": "chooser"}}


async def test_a_route_passes_the_runtimes_model_hooks(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script(("^Choose", "support"), (".", "{input} handled")))
    asked: list[str] = []

    def before(ctx: Any, request: ModelRequest) -> None:
        if isinstance(ctx, TeamContext):
            asked.append(str(request.messages[0]["content"]))

    def after(ctx: Any, response: ModelResponse) -> ModelResponse | None:
        if isinstance(ctx, TeamContext):  # the route's answer, overruled
            return ModelResponse("billing", [], response.input_tokens, response.output_tokens)
        return None

    hooks = HookSet().add("before_model", before).add("after_model", after)
    async with Runtime(store, hooks=hooks) as rt:
        await rt.apply(
            [*agents(model_server.url, "billing", "support"), chooser(model_server.url),
             team("desk", ROUTER)]
        )  # fmt: skip
        result = await rt.run("desk", "I cannot log in")
    assert result.status == "succeeded", result.reason
    assert asked and asked[0].startswith("Choose who handles the request below")
    assert result.output == "I cannot log in handled"
    events = await store.read_events(result.run_id)
    routed = next(e.data for e in events if e.type == ev.NODE_FINISHED)
    assert (routed["output"], routed["reply"]) == ("billing", "billing")
    [intent] = [e for e in events if e.type == ev.MODEL_CALL]
    assert intent.data["kind"] == "route" and intent.data["key"] == f"{result.run_id}/route/1/0"
    assert intent.step == routed["step"]


async def test_a_route_spends_the_teams_token_budget(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script((".", "{input} noted")))
    spec = {
        "budgets": {"max_tokens": 5},
        "nodes": [
            {"name": "intake", "agent": "clerk"},
            {"name": "route", "after": ["intake"], "input": "{state.intake}",
             "route": {"members": ["billing", "support"], "model": "chooser"}},
            {"name": "billing", "agent": "clerk", "after": ["route"],
             "when": {"key": "route", "equals": "billing"}},
            {"name": "support", "agent": "clerk", "after": ["route"],
             "when": {"key": "route", "equals": "support"}},
        ],
    }  # fmt: skip
    async with ModelTestServer(script((".", "billing"))) as routing:
        async with Runtime(store) as rt:
            await rt.apply([*agents(model_server.url, "clerk"), chooser(routing.url),
                            team("desk", spec)])  # fmt: skip
            result = await rt.run("desk", "my invoice is wrong")
            replayed = await rt.replay(result.run_id)
        asked = len(routing.requests)
    # The intake's child run could not reserve its step within the team's 5 tokens (it
    # draws on the team's account): the team stops there, and the route never asked.
    assert result.status == "budget_exhausted"
    assert f"budget default/run:{result.run_id}: max_tokens=5 would be passed" in (
        result.reason or ""
    )
    assert asked == 0
    assert replayed.status == "budget_exhausted"


async def test_a_route_falls_back_to_its_models_fallback(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script((".", "{input} handled")))
    async with ModelTestServer(script((".", "support"))) as backup:
        async with ModelTestServer() as broken:
            broken.inject(500, count=100)
            async with Runtime(store) as rt:
                await rt.apply(
                    [*agents(model_server.url, "billing", "support"),
                     chooser(broken.url, fallbacks=["backup"]),
                     doc("Model", "backup", {"provider": "openai", "base_url": backup.url}),
                     team("desk", ROUTER)]
                )  # fmt: skip
                result = await rt.run("desk", "I cannot log in")
    assert result.status == "succeeded", result.reason
    assert result.output == "I cannot log in handled"
    events = await store.read_events(result.run_id)
    [answer] = [e for e in events if e.type == ev.MODEL_RESULT]
    assert answer.data["via"] == "backup" and answer.data["content"] == "support"
    assert [e.data["model"] for e in events if e.type == ev.MODEL_ERROR] == ["chooser"]
