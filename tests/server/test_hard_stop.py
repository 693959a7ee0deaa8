"""The hard stop: cancelling, over HTTP, a run whose code tool is mid-call stops its
sandbox and ends the run ``cancelled`` within 5 seconds of the request, whether the
request reaches the server that executes the run or another replica over the same
store. The bound is read from the run's recorded timestamps: when the cancel was
asked (the end's ``asked_at``) and when the run ended (the end's ``ts``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from agentrt.models.testserver import ModelTestServer
from agentrt.spec import ScriptedRule
from tests.conftest import call
from tests.server.harness import Api, Served, start_serve
from tests.server.run_fixtures import events_of, in_tool_call

RESOURCES = (
    "apiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {{name: m}}\n"
    "spec: {{provider: openai, base_url: '{url}', max_retries: 0}}\n"
    "---\napiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {{name: py}}\n"
    "spec: {{kind: code, code: {{language: python}}, timeout_s: 120}}\n"
    "---\napiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {{name: coder}}\n"
    "spec: {{model: m, tools: [py]}}\n"
)


def _ticker(name: str) -> str:
    """Code that appends a line to ``name`` every 10 ms for two minutes."""
    return (
        "import time\n"
        f"for i in range(12000):\n    open({name!r}, 'a').write(f'{{i}}\\n'); time.sleep(0.01)\n"
    )


async def _ticks(name: str) -> int | None:
    """Lines the sandbox wrote to ``name`` so far; ``None`` once its volume is gone."""
    root = Path(os.environ["AGENTRT_SANDBOX_DIR"])

    def count() -> int | None:
        lines = None
        for path in root.rglob(name):
            with contextlib.suppress(OSError):  # removed while read: the sandbox is going
                lines = (lines or 0) + len(path.read_text().splitlines())
        return lines

    return await asyncio.to_thread(count)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    """Two ``agentrt serve`` processes over one store, and the model server."""
    model = ModelTestServer()
    model.start_in_thread()
    url = f"sqlite:///{tmp_path / 'api.db'}"
    served: list[Served] = []
    try:
        served = [start_serve(url, tmp_path, model), start_serve(url, tmp_path, model)]
        yield served[0], served[1]
    finally:
        for server in served:
            server.stop()
        model.stop_thread()


@pytest.mark.parametrize("through", ["the executing server", "another replica"])
async def test_cancelling_a_run_mid_code_call_stops_its_sandbox_within_5_seconds(
    replicas: tuple[Served, Served], through: str
) -> None:
    executing, other = replicas
    name = f"ticks-{secrets.token_hex(6)}.txt"
    executing.model.set_rules(
        [
            ScriptedRule.model_validate(
                {"steps": [{"tool_calls": [call("py", code=_ticker(name))]}, {"content": "x"}]}
            )
        ]
    )
    tenant = f"t-{secrets.token_hex(3)}"
    async with aiohttp.ClientSession() as http:
        key = await executing.key(tenant, "user", name="u")
        admin = Api(executing, await executing.key(tenant, "admin", name="a"), http)
        assert (await admin.apply(RESOURCES.format(url=executing.model.url))).status == 200
        user = Api(executing, key, http)
        started = await user.call("POST", "/v1/queries", json={"target": "coder", "input": "go"})
        run_id = started.body["run"]["id"]
        await in_tool_call(user, run_id, "py")
        async with asyncio.timeout(60):
            while (await _ticks(name) or 0) < 5:  # the code runs: the call is mid-way
                await asyncio.sleep(0.02)
        asker = user if through == "the executing server" else Api(other, key, http)
        cancelled = await asker.call("POST", f"/v1/runs/{run_id}/cancel")
        assert cancelled.status == 200, cancelled
        assert cancelled.body["run"]["status"] == "cancelled"
        # Its sandbox was torn down: killed, then its volume (with the file) removed.
        async with asyncio.timeout(5):
            while await _ticks(name) is not None:
                await asyncio.sleep(0.05)
        view = (await user.call("GET", f"/v1/runs/{run_id}")).body
    calls = [e for e in events_of(view, "tool.call") if e["data"]["name"] == "py"]
    assert len(calls) == 1 and events_of(view, "tool.result") == [], "stopped mid-call"
    (end,) = events_of(view, "run.finished")
    assert end["data"]["status"] == "cancelled" and end["data"]["by"] == "key:u"
    asked = end["data"]["asked_at"]
    assert calls[0]["ts"] < asked, "the call was under way when the cancel was asked"
    assert 0 <= end["ts"] - asked < 5.0, (end["ts"], asked)
    assert view["run"]["finished_at"] == end["ts"]
    # SIGTERM stops each server whole: its runtime closes, its warm sandboxes and
    # their volumes go with it (none is left mounted).
    for server in replicas:
        assert server.stop() == 0, server.said()
        assert "agentrt serve stopped" in server.said()
    mounts = Path("/proc/self/mounts").read_text()
    assert not [p for p in (s.proc.pid for s in replicas) if f"/agentrt-{p}-" in mounts]
