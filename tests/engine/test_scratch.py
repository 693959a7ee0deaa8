"""Scratch directories: snapshots per step, restored by a fork, removed by gc."""

from __future__ import annotations

from pathlib import Path

from agentrt.engine.scratch import ScratchSpace


def test_snapshots_restore_the_files_as_they_were_at_a_step(tmp_path: Path) -> None:
    space = ScratchSpace(tmp_path / "scratch")
    work = space.dir_of("run_a")
    (work / "data.txt").write_text("v1")
    space.snapshot("run_a", 2)
    (work / "data.txt").write_text("v2")
    (work / "more.txt").write_text("later")
    space.snapshot("run_a", 5)

    assert space.restore("run_a", 4, "fork_at_4")
    fork = space.dir_of("fork_at_4")
    assert (fork / "data.txt").read_text() == "v1" and not (fork / "more.txt").exists()
    assert space.restore("run_a", 9, "fork_at_9")
    assert (space.dir_of("fork_at_9") / "more.txt").read_text() == "later"
    assert not space.restore("run_a", 1, "fork_at_1")  # nothing yet at step 1
    assert list(space.dir_of("fork_at_1").iterdir()) == []


def test_remove_deletes_only_the_runs_gc_removed(tmp_path: Path) -> None:
    space = ScratchSpace(tmp_path / "scratch")
    for run in ("keep", "drop"):
        (space.dir_of(run) / "f").write_text(run)
        space.snapshot(run, 1)
    assert space.remove(["drop", "never_had_scratch"]) == 2  # the drop dir and its snapshots
    assert sorted(p.name for p in space.root.iterdir()) == ["keep", "keep.steps"]
