"""SIGKILL a run in a child process at many points, resume it, and check nothing is
lost and nothing is done twice. Everything is real: the `agentrt` CLI in a child
process, SQLite on disk, HTTP to the test server."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.state import Event, SqliteStore
from tests.conftest import call, resources, rules

ROOT = Path(__file__).resolve().parents[2]
STEPS = 6  # model steps with tools; each records a line and adds two numbers
SCRIPT = rules(
    *(
        {"tool_calls": [call("record", text=f"line {i}"), call("add", a=i, b=100)]}
        for i in range(STEPS)
    ),
    {"content": "finished after {last_tool_result}"},
)


@pytest.fixture
def server() -> Iterator[ModelTestServer]:
    """The test server in a thread: the child processes talk to it over HTTP."""
    srv = ModelTestServer(SCRIPT, latency_s=0.03)
    srv.start_in_thread()
    try:
        yield srv
    finally:
        srv.stop_thread()


def _env(effects: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "AGENTRT_TEST_EFFECTS": str(effects), "PYTHONPATH": str(ROOT)}
    env.update(extra)
    return env


def _cli(db: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentrt.cli.main", "--store", str(db), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _spawn(db: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentrt.cli.main", "--store", str(db), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _prepare(db: Path, url: str, tools: list[str]) -> None:
    store = await SqliteStore.open(db)
    try:
        async with Runtime(store, resume_interrupted=False) as rt:
            await rt.apply(resources(url, tools=tools))
    finally:
        await store.close()


async def _events(db: Path) -> tuple[str | None, list[Event]]:
    store = await SqliteStore.open(db)
    try:
        runs = await store.list_runs(limit=1)
        if not runs:
            return None, []
        return runs[0].id, await store.read_events(runs[0].id)
    finally:
        await store.close()


def _wait_for_events(db: Path, count: int, child: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 60  # a safety net against a hung child, not a measurement
    while time.monotonic() < deadline:
        run_id, events = asyncio.run(_events(db))
        if run_id is not None and len(events) >= count:
            return run_id
        if child.poll() is not None:
            raise AssertionError(
                f"child ended early: {child.stderr.read() if child.stderr else ''}"
            )
        time.sleep(0.005)
    raise AssertionError("the run never reached the kill point")


def _model_step_of(request: dict[str, object]) -> int:
    """Which model step a request is for: the number of assistant messages it carries."""
    messages = request["messages"]
    assert isinstance(messages, list)
    return sum(1 for m in messages if m["role"] == "assistant")


def test_sigkill_at_random_points_then_resume(tmp_path: Path, server: ModelTestServer) -> None:
    # The reference: one uninterrupted run.
    ref_db, ref_effects = tmp_path / "ref.db", tmp_path / "ref-effects.txt"
    asyncio.run(_prepare(ref_db, server.url, ["record", "add"]))
    ref = _cli(ref_db, "run", "bot", "go", "-q", env=_env(ref_effects))
    assert ref.returncode == 0, ref.stderr
    expected_output = ref.stdout.strip()
    assert expected_output == f"finished after {STEPS - 1 + 100}"
    total_events = len(asyncio.run(_events(ref_db))[1])

    rng = random.Random(20261124)
    kill_points = sorted(rng.sample(range(3, total_events - 1), 5))
    for kill_at in kill_points:
        db, effects = tmp_path / f"kill{kill_at}.db", tmp_path / f"effects{kill_at}.txt"
        asyncio.run(_prepare(db, server.url, ["record", "add"]))
        server.reset_log()
        child = _spawn(db, "run", "bot", "go", "-q", env=_env(effects))
        run_id = _wait_for_events(db, kill_at, child)
        child.send_signal(signal.SIGKILL)
        child.communicate()
        _, before = asyncio.run(_events(db))
        recorded_models = {e.step for e in before if e.type == ev.MODEL_RESULT}
        requests_before = len(server.requests)

        resumed = _cli(db, "resume", run_id, "--json", env=_env(effects))
        assert resumed.returncode == 0, (kill_at, resumed.stdout, resumed.stderr)
        assert f'"output":"{expected_output}"' in resumed.stdout

        # Every side effect happened exactly once, keyed by its idempotency key.
        lines = effects.read_text().splitlines()
        keys = Counter(line.split("\t")[0] for line in lines)
        assert all(n == 1 for n in keys.values()), (kill_at, keys)
        assert sorted(line.split("\t")[2] for line in lines) == [f"line {i}" for i in range(STEPS)]
        assert all(key.startswith(run_id + ":") for key in keys)

        # No model call was repeated for a step whose result was recorded.
        _, after = asyncio.run(_events(db))
        steps_after_resume = [_model_step_of(r) for r in server.requests[requests_before:]]
        model_steps = sorted(e.step for e in after if e.type == ev.MODEL_CALL and e.step)
        ordinal = {step: i for i, step in enumerate(model_steps)}
        for step in recorded_models:
            assert ordinal[step] not in steps_after_resume, (kill_at, step)
        assert len(server.requests) <= STEPS + 1 + 1  # at most one call was in flight at the kill
        assert after[-1].type == ev.RUN_FINISHED and after[-1].data["status"] == "succeeded"
        assert [e.seq for e in after] == list(range(1, len(after) + 1))


def _kill_during_charge(
    tmp_path: Path, server: ModelTestServer, db: Path, effects: Path, tool: str, amount: int
) -> str:
    """Start a run whose tool charges and then hangs; SIGKILL it mid-tool; return the run id."""
    server.set_rules(
        rules({"tool_calls": [call(tool, amount=amount)]}, {"content": "{last_tool_result}"})
    )
    marker = tmp_path / "charging"
    asyncio.run(_prepare(db, server.url, [tool]))
    env = _env(effects, AGENTRT_TEST_CHARGE_SLEEP="60", AGENTRT_TEST_CHARGE_MARKER=str(marker))
    child = _spawn(db, "run", "bot", "pay", "-q", env=env)
    while not marker.exists():
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    return marker.read_text().split(":")[0]


def test_kill_during_non_idempotent_tool_leaves_step_unknown(
    tmp_path: Path, server: ModelTestServer
) -> None:
    db, effects = tmp_path / "a.db", tmp_path / "effects.txt"
    run_id = _kill_during_charge(tmp_path, server, db, effects, "charge", 5)

    resumed = _cli(db, "resume", run_id, env=_env(effects))
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr  # waiting for a person
    assert "waiting" in resumed.stdout
    _, events = asyncio.run(_events(db))
    unknown = [e for e in events if e.type == ev.TOOL_UNKNOWN]
    assert len(unknown) == 1 and unknown[0].step == 2
    assert effects.read_text().count("\tcharge\t") == 1  # not run twice

    shown = _cli(db, "runs", "show", run_id, env=_env(effects))
    assert "unknown" in shown.stdout

    decided = _cli(
        db,
        "resolve",
        run_id,
        "2",
        "--output",
        "charged 5 (checked by hand)",
        "--json",
        env=_env(effects),
    )
    assert decided.returncode == 0, decided.stderr
    assert '"output":"charged 5 (checked by hand)"' in decided.stdout
    assert effects.read_text().count("\tcharge\t") == 1


def test_kill_during_tool_with_lookup_is_reconciled(
    tmp_path: Path, server: ModelTestServer
) -> None:
    db, effects = tmp_path / "b.db", tmp_path / "effects.txt"
    run_id = _kill_during_charge(tmp_path, server, db, effects, "charge_lookup", 7)

    resumed = _cli(db, "resume", run_id, "--json", env=_env(effects))
    assert resumed.returncode == 0, resumed.stderr
    assert '"output":"charged 7"' in resumed.stdout
    _, events = asyncio.run(_events(db))
    result = next(e for e in events if e.type == ev.TOOL_RESULT)
    assert result.data["reconciled"] == "lookup"
    assert effects.read_text().count("\tcharge\t") == 1


def test_runtime_start_resumes_interrupted_runs(tmp_path: Path, server: ModelTestServer) -> None:
    db, effects = tmp_path / "auto.db", tmp_path / "effects.txt"
    asyncio.run(_prepare(db, server.url, ["record", "add"]))
    child = _spawn(db, "run", "bot", "go", "-q", env=_env(effects))
    run_id = _wait_for_events(db, 8, child)
    child.send_signal(signal.SIGKILL)
    child.communicate()

    async def start_runtime() -> tuple[str, str | None]:
        store = await SqliteStore.open(db)
        try:
            async with Runtime(store) as rt:  # resume_interrupted=True is the default
                result = await rt.wait(run_id)
                return result.status, result.output
        finally:
            await store.close()

    os.environ["AGENTRT_TEST_EFFECTS"] = str(effects)
    try:
        status, output = asyncio.run(start_runtime())
    finally:
        del os.environ["AGENTRT_TEST_EFFECTS"]
    assert (status, output) == ("succeeded", f"finished after {STEPS - 1 + 100}")
    keys = Counter(line.split("\t")[0] for line in effects.read_text().splitlines())
    assert len(keys) == STEPS and set(keys.values()) == {1}


def _key_run(db: Path, key: str) -> list[str]:
    async def find() -> list[str]:
        store = await SqliteStore.open(db)
        try:
            return [r.id for r in await store.list_runs(limit=100) if r.idempotency_key == key]
        finally:
            await store.close()

    return asyncio.run(find())


@pytest.mark.parametrize("how", ["run", "apply"])
def test_submitting_its_key_again_after_sigkill_resumes_the_run(
    tmp_path: Path, server: ModelTestServer, how: str
) -> None:
    """`agentrt run --idempotency-key K` (or re-applying a Query with key K) after the
    process that ran K was killed: the existing run is resumed, not waited on forever."""
    db, effects = tmp_path / "key.db", tmp_path / "effects.txt"
    asyncio.run(_prepare(db, server.url, ["record", "add"]))
    query = tmp_path / "query.yaml"
    query.write_text(
        "apiVersion: agentrt.dev/v1\nkind: Query\nmetadata: {name: q}\n"
        "spec: {target: bot, input: go, idempotency_key: K}\n"
    )
    args = ["run", "bot", "go", "-q", "--idempotency-key", "K"] if how == "run" else []
    args = args or ["apply", "-f", str(query)]
    child = _spawn(db, *args, env=_env(effects))
    run_id = _wait_for_events(db, 8, child)
    child.send_signal(signal.SIGKILL)
    child.communicate()

    again = subprocess.run(
        [sys.executable, "-m", "agentrt.cli.main", "--store", str(db), *args],
        env=_env(effects),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,  # a safety net: before the fix this waited forever
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"finished after {STEPS - 1 + 100}" in again.stdout
    assert _key_run(db, "K") == [run_id], "the same run, not a second one"
    keys = Counter(line.split("\t")[0] for line in effects.read_text().splitlines())
    assert len(keys) == STEPS and set(keys.values()) == {1}
    _, events = asyncio.run(_events(db))
    assert [e.data["resumed"] for e in events if e.type == ev.RUN_STARTED][-1] is True
