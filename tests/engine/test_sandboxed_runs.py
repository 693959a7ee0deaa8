"""Model-written code in a run: contained, reported to the model, pausable, killable."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import parse_resource
from agentrt.state import SqliteStore
from tests.conftest import call, resources, rules


def _code_tool(**spec: Any) -> Any:
    body = {"kind": "code", "code": {"language": "python"}, "timeout_s": 20, **spec}
    return parse_resource(
        {"apiVersion": "agentrt.dev/v1", "kind": "Tool", "metadata": {"name": "py"}, "spec": body}
    )


def _tool_messages(server: ModelTestServer) -> list[str]:
    return [m["content"] for m in server.requests[-1]["messages"] if m["role"] == "tool"]


async def test_escapes_are_contained_and_the_run_goes_on(
    store: SqliteStore, model_server: ModelTestServer, tmp_path: Path
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    attempts = [
        f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('LE' + 'AK')",
        f"print(open({str(secret)!r}).read())",
        "open('/agentrt-escape', 'w').write('x'); print('LE' + 'AK')",
        "x = b'x' * (512 * 1024 * 1024); print('LE' + 'AK')",  # touched, not lazily zeroed
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "print('y' * 100000)",
    ]
    steps = [{"tool_calls": [call("py", code=code)]} for code in attempts]
    model_server.set_rules(rules(*steps, {"content": "survived"}))
    # Enough memory that 16 processes hit the pids limit first, under any backend.
    limits = {"memory_mb": 200, "pids": 16, "cpu_s": 5, "output_bytes": 1000}
    try:
        async with Runtime(store, scratch_root=tmp_path / "scratch") as rt:
            await rt.apply([*resources(model_server.url, tools=[]), _code_tool(limits=limits)])
            await rt.apply(resources(model_server.url, agent={"tools": ["py"]}))
            result = await rt.run("bot", "escape")
    finally:
        listener.close()
    assert result.status == "succeeded" and result.output == "survived"
    outputs = _tool_messages(model_server)
    assert len(outputs) == len(attempts)
    for out in outputs:
        assert "LEAK" not in out and "top secret" not in out, (outputs.index(out), out)
    network, read, write, memory, forks, flood = outputs
    assert "exited with code 1" in network and "Error" in network
    assert "No such file" in read or "Permission denied" in read
    assert "Read-only file system" in write or "Permission denied" in write
    assert "oom_killed" in memory
    assert "pids_exceeded" in forks
    assert "truncated" in flood and len(flood) < 2000
    events = await store.read_events(result.run_id)
    reasons = [e.data["trace"]["reason"] for e in events if e.type == ev.TOOL_RESULT]
    assert reasons == ["ok", "ok", "ok", "oom_killed", "pids_exceeded", "ok"]


async def _lines(pattern: str) -> int:
    root = Path(os.environ["AGENTRT_SANDBOX_DIR"])
    found = await asyncio.to_thread(lambda: list(root.rglob(pattern)))
    return sum(len(p.read_text().splitlines()) for p in found)


async def test_pause_resume_and_terminate_a_runs_tools(
    store: SqliteStore, model_server: ModelTestServer, tmp_path: Path
) -> None:
    name = f"ticks-{uuid.uuid4().hex}.txt"
    ticker = (
        "import time\n"
        f"for i in range(3000):\n    open({name!r}, 'a').write(f'{{i}}\\n'); time.sleep(0.01)\n"
        "print('finished')"
    )
    model_server.set_rules(
        rules({"tool_calls": [call("py", code=ticker)]}, {"content": "after: {last_tool_result}"})
    )
    async with Runtime(store, scratch_root=tmp_path / "scratch") as rt:
        await rt.apply([*resources(model_server.url, tools=[]), _code_tool(timeout_s=60)])
        await rt.apply(resources(model_server.url, agent={"tools": ["py"]}))
        run = await rt.submit("bot", "tick")
        while await _lines(name) < 5:
            await asyncio.sleep(0.02)
        assert await rt.pause_tools(run.id) == 1
        frozen = await _lines(name)
        await asyncio.sleep(0.5)
        assert await _lines(name) == frozen  # no progress while paused
        assert await rt.resume_tools(run.id) == 1
        while await _lines(name) <= frozen:
            await asyncio.sleep(0.02)  # progress again
        assert await rt.terminate_tools(run.id) == 1
        result = await rt.wait(run.id)
    assert result.status == "succeeded"  # the run goes on after its tool is killed
    assert "terminated" in (result.output or "")
    assert "finished" not in (result.output or "")
