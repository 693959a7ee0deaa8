"""Checked-in run logs replay exactly; a log that no longer matches the loop is caught."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.errors import NondeterminismError
from agentrt.state import SqliteStore

FIXTURES = Path(__file__).with_name("fixtures")


def _load(name: str) -> dict[str, object]:
    data = json.loads((FIXTURES / name).read_text())
    assert isinstance(data, dict)
    return data


async def test_recorded_demo_log_replays_exactly(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRT_DEMO_NOTES", str(tmp_path))
    data = _load("demo_run.json")
    recorded = data["events"][-1]["data"]  # type: ignore[index]
    async with Runtime(store) as rt:
        run = await rt.import_run(data)
        result = await rt.replay(run.id)
        exported = await rt.export_run(run.id)
    assert result.status == recorded["status"] == "succeeded"
    assert result.output == recorded["output"]
    assert result.steps == 10 and result.usage.tool_calls == 5
    assert not (tmp_path / "demo-notes.txt").exists()  # no tool ran
    assert exported["events"] == data["events"]


async def test_tampered_log_is_nondeterministic(store: SqliteStore) -> None:
    async with Runtime(store) as rt:
        run = await rt.import_run(_load("demo_run_tampered.json"))
        with pytest.raises(NondeterminismError, match="step 6: the model request differs"):
            await rt.replay(run.id)


async def test_changed_instructions_are_caught_on_replay(store: SqliteStore) -> None:
    data = _load("demo_run.json")
    created = data["events"][0]  # type: ignore[index]
    created["data"]["spec"]["agent_spec"]["instructions"] = "Something else."
    async with Runtime(store) as rt:
        run = await rt.import_run(data)
        with pytest.raises(NondeterminismError, match="step 1"):
            await rt.replay(run.id)


async def test_import_rejects_what_is_not_an_export(store: SqliteStore) -> None:
    async with Runtime(store) as rt:
        with pytest.raises(Exception, match=r"agentrt\.run/v1"):
            await rt.import_run({"events": []})


async def test_an_imported_log_is_claimed_by_no_worker_while_it_is_stored(
    store: SqliteStore,
) -> None:
    """Another worker claiming runs the whole time never gets an imported finished run:
    it is created leased to the importer, so its status is final once anyone can see it."""
    data = _load("demo_run.json")
    stolen: list[str] = []
    done = False

    async def claim_forever() -> None:
        while not done:
            claimed = await store.claim_runs("thief", 30.0, now=time.time(), limit=10)
            stolen.extend(run.id for run in claimed)
            await asyncio.sleep(0)

    async with Runtime(store) as rt:
        thief = asyncio.create_task(claim_forever())
        try:
            imported = [await rt.import_run(data) for _ in range(20)]
        finally:
            done = True
            await thief
    assert stolen == []
    for run in imported:
        stored = await store.get_run(run.id)
        assert stored is not None and stored.status == "succeeded" and stored.lease_owner is None
