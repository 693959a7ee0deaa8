"""The run context's time and ids are recorded: replay returns them again, and a replay
whose code asks for them otherwise, or whose recording was changed, is nondeterministic.
Real Runtime and SQLite, the HTTP test model, a hook named in the Agent spec."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agentrt import NondeterminismError, Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import call, resources, rules

STAMP = {"hooks": {"before_model": "tests.sample_hooks:stamp"}}


@pytest.fixture
def stamps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the ``stamp`` hook writes what it saw to."""
    path = tmp_path / "stamps.txt"
    monkeypatch.setenv("AGENTRT_TEST_STAMPS", str(path))
    return path


def seen(stamps: Path) -> list[str]:
    """What the hook saw since the last call, one line per model step."""
    lines = stamps.read_text().splitlines()
    stamps.unlink()
    return lines


async def stamped_run(rt: Runtime, url: str) -> str:
    """A run of two model steps, each stamped by the hook."""
    await rt.apply(resources(url, tools=["add"], agent=STAMP))
    result = await rt.run("bot", "add them")
    assert result.status == "succeeded", result.reason
    return result.run_id


async def test_a_hooks_time_and_ids_replay_as_recorded(
    store: SqliteStore, model_server: ModelTestServer, stamps: Path
) -> None:
    model_server.set_rules(rules({"tool_calls": [call("add", a=1, b=2)]}, {"content": "3"}))
    async with Runtime(store) as rt:
        run_id = await stamped_run(rt, model_server.url)
        live = seen(stamps)
        replayed = await rt.replay(run_id)
        again = seen(stamps)
    assert replayed.status == "succeeded"
    assert [line.split("\t")[0] for line in live] == ["1", "3"]  # the two model steps
    assert again == live  # the same times and ids, not the clock's or new random ones
    values = [e.data for e in await store.read_events(run_id) if e.type == ev.CONTEXT_VALUE]
    assert [(v["kind"], v["step"], v["n"]) for v in values] == [
        ("now", 1, 0), ("id", 1, 1), ("now", 3, 0), ("id", 3, 1)
    ]  # fmt: skip
    assert [f"{v['step']}\t{v['value']!r}" for v in values[::2]] == [
        line.rsplit("\t", 1)[0] for line in live
    ]


async def test_a_changed_recording_makes_replay_nondeterministic(
    store: SqliteStore, model_server: ModelTestServer, stamps: Path
) -> None:
    model_server.set_rules(rules({"tool_calls": [call("add", a=1, b=2)]}, {"content": "3"}))
    async with Runtime(store) as rt:
        run_id = await stamped_run(rt, model_server.url)
        [event] = [e for e in await store.read_events(run_id) if e.type == ev.CONTEXT_VALUE][
            2:3
        ]  # step 3's time
        changed = {**event.data, "value": event.data["value"] - 3600.0}
        with sqlite3.connect(store.path) as db:  # edited in the store, behind its back
            db.execute(
                "UPDATE events SET data = ? WHERE seq = ? "
                "AND run_pk = (SELECT pk FROM runs WHERE id = ?)",
                (json.dumps(changed).encode(), event.seq, run_id),
            )
        with pytest.raises(NondeterminismError, match="step 3: value 1 asked at this step"):
            await rt.replay(run_id)


async def test_asking_for_another_kind_of_value_makes_replay_nondeterministic(
    store: SqliteStore,
    model_server: ModelTestServer,
    stamps: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_server.set_rules(rules({"content": "hello"}))
    async with Runtime(store) as rt:
        run_id = await stamped_run(rt, model_server.url)
        monkeypatch.setenv("AGENTRT_TEST_STAMP_ORDER", "id-first")  # the hook changed
        with pytest.raises(NondeterminismError, match="is 'id'; the log recorded 'now'"):
            await rt.replay(run_id)


async def test_a_fork_sees_the_time_and_ids_of_the_steps_it_shares(
    store: SqliteStore, model_server: ModelTestServer, stamps: Path
) -> None:
    model_server.set_rules(rules({"tool_calls": [call("add", a=1, b=2)]}, {"content": "3"}))
    async with Runtime(store) as rt:
        run_id = await stamped_run(rt, model_server.url)
        live = seen(stamps)
        forked = await rt.fork(run_id, from_step=2)
        result = await rt.wait(forked.id)
        in_fork = seen(stamps)
    assert result.status == "succeeded", result.reason
    # Step 1 is shared: its hook sees what it saw in the origin. Step 3 is the fork's own.
    assert in_fork[0] == live[0]
    assert in_fork[1].split("\t")[0] == "3" and in_fork[1] != live[1]
