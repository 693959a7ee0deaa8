"""The live step trace of `agentrt run` and `agentrt resume`, in real processes.

A resumed run's trace must read like a fresh one: each step names its model
or tool and says how long it took, and the running token count includes the
steps recorded before the interruption.
"""

from __future__ import annotations

import asyncio
import os
import re
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
from agentrt.state import Event, SqliteStore
from tests.conftest import call, resources, rules

ROOT = Path(__file__).resolve().parents[2]
AGENTRT = Path(sys.executable).with_name("agentrt")
# Ctrl-C reaches a program only if it does not inherit SIGINT ignored, which is how
# a shell without job control starts anything it runs in the background (a CI job
# may be one): the interrupted command is started with SIGINT at its default.
_WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


@pytest.fixture
def server() -> Iterator[ModelTestServer]:
    srv = ModelTestServer(
        rules(
            {"tool_calls": [call("record", text="x")]},
            {"tool_calls": [call("add", a=1, b=2)]},
            {"content": "done {last_tool_result}"},
        )
    )
    srv.start_in_thread()
    try:
        yield srv
    finally:
        srv.stop_thread()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "AGENTRT_STORE": str(tmp_path / "trace.db"),
        "AGENTRT_TEST_EFFECTS": str(tmp_path / "effects.txt"),
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
        **extra,
    }


async def _prepare(db: Path, url: str) -> None:
    store = await SqliteStore.open(db)
    try:
        async with Runtime(store, resume_interrupted=False) as rt:
            await rt.apply(resources(url, tools=["record", "add"]))
    finally:
        await store.close()


async def _log(db: Path) -> tuple[str, list[Event]]:
    store = await SqliteStore.open(db)
    try:
        (run,) = await store.list_runs(limit=1)
        return run.id, await store.read_events(run.id)
    finally:
        await store.close()


def _interrupt_when(
    tmp_path: Path, env: dict[str, str], sig: signal.Signals, ready: object
) -> tuple[str, list[Event]]:
    """Start `agentrt run`, send ``sig`` once ``ready(events)`` holds, return the log."""
    db = tmp_path / "trace.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _WITH_SIGINT, str(AGENTRT), "run", "bot", "go"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60  # a safety net against a hung child
        while time.monotonic() < deadline:
            if db.exists():
                try:
                    _, events = asyncio.run(_log(db))
                except ValueError:  # no run yet
                    events = []
                if events and ready(events):  # type: ignore[operator]
                    break
            assert child.poll() is None, child.communicate()
            time.sleep(0.01)
        child.send_signal(sig)
        child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return asyncio.run(_log(db))


def _resume(run_id: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(AGENTRT), "resume", run_id],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _ms(events: list[Event], step: int) -> int:
    """What the trace shows for ``step`` re-performed after a resume: from the resume on
    (from the new attempt's own intent, when performing it again recorded one)."""
    resumed = [e for e in events if e.type == ev.RUN_STARTED and e.data.get("resumed")][-1]
    again = [
        e
        for e in events
        if e.step == step and e.type in (ev.MODEL_CALL, ev.TOOL_CALL) and e.seq > resumed.seq
    ]
    start = again[-1].ts if again else resumed.ts
    result = next(
        e for e in events if e.step == step and e.type in (ev.MODEL_RESULT, ev.TOOL_RESULT)
    )
    return round((result.ts - start) * 1000)


def test_a_model_step_interrupted_by_ctrl_c_is_named_and_timed_on_resume(
    tmp_path: Path, server: ModelTestServer
) -> None:
    asyncio.run(_prepare(tmp_path / "trace.db", server.url))
    server.latency_s = 30  # the first model call is in flight when Ctrl-C comes
    run_id, before = _interrupt_when(
        tmp_path,
        _env(tmp_path),
        signal.SIGINT,
        lambda events: len(server.requests) == 1,
    )
    assert [e.type for e in before][-1] == ev.MODEL_CALL  # the intent, no result
    server.latency_s = 0.0
    out = _resume(run_id, _env(tmp_path))
    _, after = asyncio.run(_log(tmp_path / "trace.db"))
    line = next(x for x in out.splitlines() if "step   1" in x)
    assert re.fullmatch(r"  step   1  plan  m → record  \d+ms  tokens \d+  \$\d\.\d{4}", line)
    assert f"  {_ms(after, 1)}ms  " in line


def test_a_tool_step_interrupted_by_sigkill_is_named_and_timed_on_resume(
    tmp_path: Path, server: ModelTestServer
) -> None:
    asyncio.run(_prepare(tmp_path / "trace.db", server.url))
    slow = _env(tmp_path, AGENTRT_TEST_RECORD_SLEEP="30")
    run_id, before = _interrupt_when(
        tmp_path,
        slow,
        signal.SIGKILL,
        lambda events: any(e.type == ev.TOOL_CALL for e in events),
    )
    assert [e.type for e in before][-1] == ev.TOOL_CALL
    out = _resume(run_id, _env(tmp_path))
    _, after = asyncio.run(_log(tmp_path / "trace.db"))
    lines = out.splitlines()
    line = next(x for x in lines if "step   2" in x)
    assert re.fullmatch(r"  step   2  act   record\(text='x'\) → recorded x  \d+ms", line)
    assert line.endswith(f"  {_ms(after, 2)}ms")
    # The running token count goes on from the steps recorded before the kill.
    last_plan = [x for x in lines if "  plan  " in x][-1]
    closing = next(x for x in lines if x.startswith("succeeded"))
    total = re.search(r"tokens (\d+) \(", closing)
    assert total and f"tokens {total.group(1)}  $" in last_plan
