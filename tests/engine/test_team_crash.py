"""SIGKILL a team run in a child process at several points, resume it, and check that
finished nodes are not run again and the answer is that of an uninterrupted run.
Everything is real: the `agentrt` CLI in a child process, SQLite on disk, HTTP to
the test server, and a tool whose effects are counted per idempotency key."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.spec.loader import parse_resource
from agentrt.spec.resources import ScriptedRule
from agentrt.state import Event, SqliteStore
from tests.conftest import call, resources
from tests.engine.test_crash_resume import _cli, _env, _spawn

WORKERS = 4
SCRIPT = [
    ScriptedRule.model_validate(rule)
    for rule in (
        {
            "match": "^part",
            "steps": [{"tool_calls": [call("record", text="{input}")]}, {"content": "did {input}"}],
        },
        {"match": "^did", "steps": [{"content": "joined: {input}"}]},
        {"match": ".", "steps": [{"content": "the plan"}]},
    )
]


@pytest.fixture
def server() -> Iterator[ModelTestServer]:
    srv = ModelTestServer(SCRIPT, latency_s=0.03)
    srv.start_in_thread()
    try:
        yield srv
    finally:
        srv.stop_thread()


def _team() -> dict[str, object]:
    workers = [{"name": f"w{i}", "agent": "bot", "after": ["plan"],
                "input": f"part {i} of {{state.plan}}", "output": "parts"}
               for i in range(WORKERS)]  # fmt: skip
    return {
        "kind": "Team",
        "metadata": {"name": "crew"},
        "spec": {
            "state": {"parts": {"reducer": "append"}},
            "concurrency": 2,
            "nodes": [
                {"name": "plan", "agent": "bot"},
                *workers,
                {
                    "name": "join",
                    "agent": "bot",
                    "after": [w["name"] for w in workers],
                    "input": "{state.parts}",
                },
            ],
        },
    }


async def _prepare(db: Path, url: str) -> None:
    store = await SqliteStore.open(db)
    try:
        async with Runtime(store, resume_interrupted=False) as rt:
            team = parse_resource({"apiVersion": "agentrt.dev/v1", **_team()})
            await rt.apply([*resources(url, tools=["record"]), team])
    finally:
        await store.close()


async def _team_events(db: Path) -> tuple[str | None, list[Event], int]:
    """The team run's id and log, and how many child runs it has."""
    store = await SqliteStore.open(db)
    try:
        runs = await store.list_runs(limit=1000)
        team = [r for r in runs if r.agent == "crew"]
        if not team:
            return None, [], 0
        children = sum(1 for r in runs if r.parent_run == team[0].id)
        return team[0].id, await store.read_events(team[0].id), children
    finally:
        await store.close()


def test_sigkill_a_team_run_then_resume(tmp_path: Path, server: ModelTestServer) -> None:
    ref_db, ref_effects = tmp_path / "ref.db", tmp_path / "ref-effects.txt"
    asyncio.run(_prepare(ref_db, server.url))
    ref = _cli(ref_db, "run", "crew", "go", "-q", env=_env(ref_effects))
    assert ref.returncode == 0, ref.stderr
    expected = ref.stdout.strip()
    assert expected.startswith("joined: did part 0 of the plan")
    _, ref_events, _ = asyncio.run(_team_events(ref_db))
    total = len(ref_events)
    ref_state = ref_events[-1].data["state"]
    assert len(ref_state["parts"]) == WORKERS

    rng = random.Random(20261125)
    for kill_at in sorted(rng.sample(range(3, total - 1), 4)):
        db, effects = tmp_path / f"kill{kill_at}.db", tmp_path / f"effects{kill_at}.txt"
        asyncio.run(_prepare(db, server.url))
        child = _spawn(db, "run", "crew", "go", "-q", env=_env(effects))
        deadline = time.monotonic() + 60  # a safety net against a hung child
        run_id = None
        while time.monotonic() < deadline:
            run_id, events, _ = asyncio.run(_team_events(db))
            if len(events) >= kill_at:
                break
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.communicate()
        assert run_id is not None
        _, before, _ = asyncio.run(_team_events(db))
        done_before = {
            (e.data["node"], e.data["round"], e.data["item"])
            for e in before
            if e.type == ev.NODE_FINISHED
        }

        resumed = _cli(db, "resume", run_id, "--json", env=_env(effects))
        assert resumed.returncode == 0, (kill_at, resumed.stdout, resumed.stderr)
        assert json.loads(resumed.stdout)["output"] == expected

        _, after, children = asyncio.run(_team_events(db))
        finished = Counter(
            (e.data["node"], e.data["round"], e.data["item"])
            for e in after
            if e.type == ev.NODE_FINISHED
        )
        assert all(n == 1 for n in finished.values()), (kill_at, finished)  # none ran twice
        assert done_before <= set(finished)
        assert len(finished) == WORKERS + 2
        assert children == WORKERS + 2  # an interrupted node found its child run again
        # Each worker's effect happened once, under one idempotency key.
        lines = [line.split("\t") for line in effects.read_text().splitlines()]
        assert sorted(text for _, _, text in lines) == sorted(
            f"part {i} of the plan" for i in range(WORKERS)
        )
        assert len({key for key, _, _ in lines}) == WORKERS
        assert after[-1].type == ev.RUN_FINISHED and after[-1].data["status"] == "succeeded"
        assert after[-1].data["state"] == ref_state  # the shared state of an uninterrupted run
