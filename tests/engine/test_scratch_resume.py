"""A run resumes anywhere with its files: its scratch snapshots live in the store.

One process runs a run whose code step writes a file into the run's scratch,
and is SIGKILLed after that step; a second process resumes the run from a copy
of the store's directory without the scratch folder (as on another host), and
the run's next code step reads the file. Everything is real: the `agentrt` CLI
in child processes, SQLite on disk, the bubblewrap sandbox, HTTP to the test
server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import parse_resource
from agentrt.state import Event, SqliteStore
from tests.conftest import call, resources, rules
from tests.tools.sandbox import not_tested
from tests.tools.sandbox.hostile import backend_problem

ROOT = Path(__file__).resolve().parents[2]
WRITE = "open('notes.txt', 'w').write('written before the kill'); print('wrote')"
READ = "print(open('notes.txt').read())"


@pytest.fixture
def server() -> Iterator[ModelTestServer]:
    """The test server in a thread, slow enough to kill the run while it waits on it."""
    script = rules(
        {"tool_calls": [call("py", code=WRITE)]},
        {"tool_calls": [call("py", code=READ)]},
        {"content": "read: {last_tool_result}"},
    )
    srv = ModelTestServer(script, latency_s=0.3)
    srv.start_in_thread()
    try:
        yield srv
    finally:
        srv.stop_thread()


def _code_tool() -> object:
    spec = {"kind": "code", "code": {"language": "python", "sandbox": "bubblewrap"}}
    return parse_resource(
        {"apiVersion": "agentrt.dev/v1", "kind": "Tool", "metadata": {"name": "py"}, "spec": spec}
    )


async def _prepare(db: Path, url: str) -> None:
    async with await SqliteStore.open(db) as store, Runtime(store, resume_interrupted=False) as rt:
        await rt.apply([*resources(url, tools=[], agent={"tools": ["py"]}), _code_tool()])


async def _events(db: Path) -> tuple[str | None, list[Event]]:
    async with await SqliteStore.open(db) as store:
        runs = await store.list_runs(limit=1)
        if not runs:
            return None, []
        return runs[0].id, await store.read_events(runs[0].id)


def _cli(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "agentrt.cli.main", "--store", str(db), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_a_run_killed_after_a_code_step_resumes_elsewhere_with_its_files(
    tmp_path: Path, server: ModelTestServer
) -> None:
    why = asyncio.run(backend_problem("bubblewrap", tmp_path / "probe"))
    if why is not None:
        not_tested(f"SANDBOX BACKEND 'bubblewrap' IS NOT TESTED: its probe failed: {why}")
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    db = here / "agentrt.db"
    asyncio.run(_prepare(db, server.url))
    child = subprocess.Popen(
        _cli(db, "run", "bot", "go", "-q"),
        env=_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60  # a safety net against a hung child
        while True:
            run_id, events = asyncio.run(_events(db))
            if any(e.type == ev.TOOL_RESULT for e in events):
                break
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the code step never ended"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)  # while it waits on the second model call
    finally:
        child.communicate()
    assert run_id is not None
    assert (here / "scratch" / run_id / "notes.txt").read_text() == "written before the kill"
    assert not any(e.type == ev.RUN_FINISHED for e in asyncio.run(_events(db))[1])

    # Another host: a copy of the store's directory, without the scratch folder.
    shutil.copytree(here, elsewhere, ignore=shutil.ignore_patterns("scratch"))
    assert not (elsewhere / "scratch").exists()
    resumed = subprocess.run(
        _cli(elsewhere / "agentrt.db", "resume", run_id, "--json"),
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["output"] == "read: written before the kill"
    _, events = asyncio.run(_events(elsewhere / "agentrt.db"))
    outputs = [e.data["output"] for e in events if e.type == ev.TOOL_RESULT]
    assert outputs == ["wrote", "written before the kill"]
    restored = elsewhere / "scratch" / run_id / "notes.txt"
    assert restored.read_text() == "written before the kill"
