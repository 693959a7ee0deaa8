"""Pause, resume, terminate, paused wall time, reaping, and the warm pool."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agentrt.tools.sandbox.base import (
    SandboxBackend,
    SandboxEvent,
    SandboxLimits,
    SandboxPolicy,
    SandboxState,
)
from agentrt.tools.sandbox.cgroups import CgroupUnavailable, SandboxCgroup, detect_layout
from agentrt.tools.sandbox.pool import SandboxPool
from agentrt.tools.sandbox.registry import make_backend
from agentrt.tools.sandbox.staging import Stage
from agentrt.tools.sandbox.volume import ScratchVolume, mounted_volumes
from tests.tools.sandbox import not_tested

COUNTER = """
import time
i = 0
while True:
    i += 1
    with open("counter.txt", "a") as f:
        f.write(f"{i}\\n")
    time.sleep(0.01)
"""


def own_cgroups() -> list[Path]:
    """Sandbox cgroups of this test process still on the system."""
    try:
        layout = detect_layout()
    except CgroupUnavailable:
        return []
    prefix = f"agentrt-{os.getpid()}-"
    return [p for base in layout.base_dirs() for p in base.iterdir() if p.name.startswith(prefix)]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (bounded so a broken sandbox fails instead of hanging)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.fixture(params=["gvisor", "bubblewrap", "process"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SandboxBackend]:
    """Each backend that runs here; nothing may be left behind."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    made = make_backend(request.param, workdir=workdir)
    probe = await made.probe()
    if not probe.ok:
        not_tested(f"SANDBOX BACKEND {request.param!r} IS NOT TESTED: {probe.detail}")
    yield made
    assert own_cgroups() == []


@pytest.fixture
async def bubblewrap(tmp_path: Path) -> AsyncIterator[SandboxBackend]:
    """The bubblewrap backend (cgroup-specific tests)."""
    made = make_backend("bubblewrap", workdir=tmp_path / "workdir")
    probe = await made.probe()
    if not probe.ok:
        not_tested(f"BUBBLEWRAP IS NOT TESTED: {probe.detail}")
    yield made
    assert own_cgroups() == []


async def test_pause_stops_progress_and_resume_continues(
    backend: SandboxBackend, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    counter = scratch / "counter.txt"
    events: list[SandboxEvent] = []
    sandbox = await backend.create(
        SandboxPolicy(scratch), SandboxLimits(wall_s=60, cpu_s=None), on_event=events.append
    )
    run = asyncio.create_task(sandbox.exec(["python3", "-I", "-c", COUNTER]))
    try:
        await until(lambda: size(counter) > 0, "the counter grows")
        await sandbox.pause()
        assert sandbox.state == "paused"
        before = size(counter)
        await asyncio.sleep(0.3)
        assert size(counter) == before
        await sandbox.resume()
        assert sandbox.state == "running"
        await until(lambda: size(counter) > before, "the counter grows again")
    finally:
        await sandbox.terminate()
    result = await run
    assert result.reason == "terminated"
    assert result.exit_code is None
    states: list[SandboxState] = [e.state for e in events]
    assert states == ["created", "running", "paused", "running", "exited", "terminated"]
    assert events[-2].reason == "terminated"


async def test_terminate_while_running(backend: SandboxBackend, tmp_path: Path) -> None:
    sandbox = await backend.create(SandboxPolicy(tmp_path), SandboxLimits(wall_s=60))
    run = asyncio.create_task(sandbox.exec(["sh", "-c", "echo started; exec sleep 100"]))
    await until(lambda: sandbox.state == "running", "it runs")
    await sandbox.terminate()
    await sandbox.terminate()  # idempotent
    result = await run
    assert (result.reason, sandbox.state) == ("terminated", "terminated")


async def test_terminate_while_paused(backend: SandboxBackend, tmp_path: Path) -> None:
    sandbox = await backend.create(SandboxPolicy(tmp_path), SandboxLimits(wall_s=60))
    run = asyncio.create_task(sandbox.exec(["sleep", "100"]))
    await until(lambda: sandbox.state == "running", "it runs")
    await sandbox.pause()
    await sandbox.terminate()
    result = await run
    assert (result.reason, sandbox.state) == ("terminated", "terminated")


async def test_paused_time_does_not_count_as_wall_time(
    backend: SandboxBackend, tmp_path: Path
) -> None:
    # 0.8 s of running inside a 2.5 s wall limit (the rest is slack for a loaded
    # machine), with a 3 s pause during the first half: counting the pause would
    # end it as a timeout.
    sandbox = await backend.create(SandboxPolicy(tmp_path), SandboxLimits(wall_s=2.5))
    run = asyncio.create_task(sandbox.exec(["sh", "-c", "sleep 0.4; sleep 0.4; echo done"]))
    try:
        await until(lambda: sandbox.state == "running", "it runs")
        await sandbox.pause()
        await asyncio.sleep(3.0)
        await sandbox.resume()
        result = await run
    finally:
        await sandbox.terminate()
    assert (result.reason, result.stdout) == ("ok", "done\n")


async def test_a_sandbox_runs_one_command(backend: SandboxBackend, tmp_path: Path) -> None:
    sandbox = await backend.create(SandboxPolicy(tmp_path), SandboxLimits())
    try:
        first = await sandbox.exec(["sh", "-c", "cat; exit 3"], stdin=b"from stdin")
        assert (first.reason, first.exit_code, first.stdout) == ("ok", 3, "from stdin")
        with pytest.raises(RuntimeError, match="already used"):
            await sandbox.exec(["true"])
    finally:
        await sandbox.terminate()


async def test_snapshot_copies_the_scratch(backend: SandboxBackend, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sandbox = await backend.create(SandboxPolicy(scratch), SandboxLimits())
    try:
        plant = "echo kept > result.txt; chmod 4755 result.txt; mkfifo fifo; ln -s /etc/shadow link"
        await sandbox.exec(["sh", "-c", plant])
        copy = await sandbox.snapshot(tmp_path / "snap")
    finally:
        await sandbox.terminate()
    # A snapshot is what came back from a sandbox: normalised like every other copy.
    assert sorted(os.listdir(copy)) == ["result.txt"]
    assert (copy / "result.txt").read_text() == "kept\n"
    assert (copy / "result.txt").stat().st_mode & 0o7777 == 0o755
    assert (copy / "result.txt").stat().st_uid == os.getuid()


async def test_reap_removes_cgroups_of_dead_runtimes(
    bubblewrap: SandboxBackend, tmp_path: Path
) -> None:
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()  # its pid is now a dead runtime's pid
    layout = detect_layout()
    leftover = SandboxCgroup.create(
        f"agentrt-{gone.pid}-0badc0ffee", memory_mb=64, pids=8, layout=layout
    )
    joins = " && ".join(f"echo $$ > {f}" for f in leftover.procs_files)
    orphan = await asyncio.create_subprocess_exec("sh", "-c", f"{joins} && exec sleep 300")
    run_dir = tmp_path / "run-scratch"
    run_dir.mkdir()
    (run_dir / "kept.txt").write_text("kept")
    # A call was under way: its volume (a mounted tmpfs, where the runtime can mount)
    # holds what it wrote; the run's own directory was never written during the call.
    workdir: Path = bubblewrap.workdir  # type: ignore[attr-defined]
    home = workdir / "scratch" / f"agentrt-{gone.pid}-0badc0ffee"
    home.mkdir(parents=True)
    volume = ScratchVolume.create(home / "root", bubblewrap.user)
    (home / "root" / "half-written.txt").write_text("lost with the crash")
    # And the paths it staged for its sandbox user, if it is not the runtime's.
    stage = Stage.prepare(bubblewrap.user, f"agentrt-{gone.pid}-0badc0ffee", run_dir, ())
    live = await bubblewrap.create(SandboxPolicy(tmp_path), SandboxLimits())
    try:
        await until(lambda: len(leftover.pids()) == 1, "the orphan joined the cgroup")
        removed = await bubblewrap.reap()
        # The cgroup and the scratch directory (and whatever else crashed runtimes left).
        assert removed >= 2
        assert await orphan.wait() == -9
        assert all(not d.exists() for d in leftover.dirs.values())
        assert not home.exists()
        assert mounted_volumes(workdir) == []
        assert sorted(os.listdir(run_dir)) == ["kept.txt"]
        assert stage.home is None or not stage.home.exists()
        assert live.state == "created"  # a live runtime's sandbox is not touched
        assert (await live.exec(["echo", "alive"])).stdout == "alive\n"
    finally:
        await live.terminate()
        if orphan.returncode is None:
            orphan.kill()
            await orphan.wait()
        await leftover.remove()
        if volume.enforced and home.exists():
            volume.destroy()


async def test_warm_pool_hands_out_distinct_unused_sandboxes_and_refills(
    bubblewrap: SandboxBackend, tmp_path: Path
) -> None:
    pool = SandboxPool(
        bubblewrap,
        SandboxPolicy(tmp_path),
        SandboxLimits(),
        workdir=bubblewrap.workdir,  # type: ignore[attr-defined]
        size=2,
    )
    leases = []
    try:
        pool.warm()
        await until(lambda: pool.ready == 2, "the pool is full")
        first, second = await pool.acquire(), await pool.acquire()
        leases += [first, second]
        assert first.sandbox.id != second.sandbox.id
        assert first.scratch != second.scratch
        assert {first.sandbox.state, second.sandbox.state} == {"created"}
        assert list(first.scratch.iterdir()) == []
        await until(lambda: pool.ready == 2, "the pool refills")
        result = await first.sandbox.exec(["sh", "-c", "pwd; echo x > f.txt"])
        assert result.stdout == "/scratch\n"
        assert (first.scratch / "f.txt").exists()
        assert not (second.scratch / "f.txt").exists()
        third = await pool.acquire()
        leases.append(third)
        assert third.sandbox.id not in {first.sandbox.id, second.sandbox.id}
        assert third.sandbox.state == "created"
    finally:
        await pool.close()
        for lease in leases:
            await lease.release()
    assert pool.ready == 0
    assert list((bubblewrap.workdir / "scratch").iterdir()) == []  # type: ignore[attr-defined]


async def test_empty_pool_creates_on_demand(bubblewrap: SandboxBackend, tmp_path: Path) -> None:
    pool = SandboxPool(
        bubblewrap,
        SandboxPolicy(tmp_path),
        SandboxLimits(),
        workdir=tmp_path,
        size=0,
    )
    lease = await pool.acquire()
    try:
        assert pool.ready == 0
        assert (await lease.sandbox.exec(["echo", "on demand"])).stdout == "on demand\n"
    finally:
        await lease.release()
        await pool.close()
