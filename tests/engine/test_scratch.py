"""Scratch directories: snapshots per step in the store, restored by a fork and by a
resume on a host without the files, removed by gc."""

from __future__ import annotations

from pathlib import Path

from agentrt.engine.scratch import SCRATCH, ScratchSpace
from agentrt.state import NewRun, SqliteStore


async def _runs(store: SqliteStore, *run_ids: str) -> None:
    for run_id in run_ids:
        await store.create_run(NewRun(run_id, "default", "helper", 1.0))


async def test_snapshots_restore_the_files_as_they_were_at_a_step(
    tmp_path: Path, store: SqliteStore
) -> None:
    await _runs(store, "run_a", "fork_at_4", "fork_at_9", "fork_at_1")
    space = ScratchSpace(tmp_path / "scratch", store)
    work = space.dir_of("run_a")
    (work / "data.txt").write_text("v1")
    await space.snapshot("run_a", 2)
    (work / "data.txt").write_text("v2")
    (work / "more.txt").write_text("later")
    await space.snapshot("run_a", 5)
    assert not (space.root / "run_a.steps").exists(), "snapshots live in the store"

    assert await space.restore("run_a", 4, "fork_at_4")
    fork = space.dir_of("fork_at_4")
    assert (fork / "data.txt").read_text() == "v1" and not (fork / "more.txt").exists()
    assert await space.restore("run_a", 9, "fork_at_9")
    assert (space.dir_of("fork_at_9") / "more.txt").read_text() == "later"
    assert not await space.restore("run_a", 1, "fork_at_1")  # nothing yet at step 1
    assert list(space.dir_of("fork_at_1").iterdir()) == []
    # A fork refers to its snapshot itself: it outlives the parent's.
    own = await store.find_blob("fork_at_4", SCRATCH)
    assert own is not None and own.step == 4


async def test_a_host_without_the_runs_files_gets_them_from_the_store(
    tmp_path: Path, store: SqliteStore
) -> None:
    await _runs(store, "run_a")
    here = ScratchSpace(tmp_path / "here", store)
    (here.dir_of("run_a") / "notes.txt").write_text("step 3 wrote this")
    (here.dir_of("run_a") / "sub").mkdir()
    (here.dir_of("run_a") / "sub" / "x.bin").write_bytes(b"\0\1\2")
    await here.snapshot("run_a", 3)

    elsewhere = ScratchSpace(tmp_path / "elsewhere", store)  # another host, same store
    path = await elsewhere.prepare("run_a")
    assert (path / "notes.txt").read_text() == "step 3 wrote this"
    assert (path / "sub" / "x.bin").read_bytes() == b"\0\1\2"
    # Its own later step, then the first host again: its copy is behind, so it is replaced.
    (path / "notes.txt").write_text("step 7 wrote this")
    await elsewhere.snapshot("run_a", 7)
    again = await here.prepare("run_a")
    assert (again / "notes.txt").read_text() == "step 7 wrote this"
    # A directory that is the latest snapshot is used as it is (no unpacking).
    (again / "unsnapshotted.txt").write_text("a step that has not ended")
    assert (await here.prepare("run_a") / "unsnapshotted.txt").exists()


async def test_remove_deletes_only_the_runs_gc_removed(tmp_path: Path, store: SqliteStore) -> None:
    await _runs(store, "keep", "drop")
    space = ScratchSpace(tmp_path / "scratch", store)
    for run in ("keep", "drop"):
        (space.dir_of(run) / "f").write_text(run)
        await space.snapshot(run, 1)
    assert space.remove(["drop", "never_had_scratch"]) == 2  # the drop dir and its marker
    assert sorted(p.name for p in space.root.iterdir()) == ["keep", "keep.snapshot"]
