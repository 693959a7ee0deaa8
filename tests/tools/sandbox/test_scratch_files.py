"""What a sandbox leaves in its scratch directory is not trusted: normalised, and under quota.

On every backend: files come back owned by the runtime's user, without
setuid/setgid bits, without device files, FIFOs or sockets; symlinks are never
followed and never break a fork; a call that writes past its disk or file
quota ends ``disk_exceeded`` and its writes are discarded, so snapshots stay
bounded by the quota.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentrt.engine.scratch import ScratchSpace
from agentrt.state import NewRun, SqliteStore
from tests.tools.sandbox.hostile import ISOLATING, Tools, run_code, tools_for


async def _space(root: Path, store: SqliteStore, *runs: str) -> ScratchSpace:
    """Scratch directories under ``root``, snapshots in ``store``, for ``runs``."""
    for run_id in runs:
        await store.create_run(NewRun(run_id, "default", "helper", 1.0))
    return ScratchSpace(root, store)


async def _tar(store: SqliteStore, digest: str) -> tarfile.TarFile:
    data = await store.get_blob(digest)
    assert data is not None
    return tarfile.open(fileobj=io.BytesIO(data))


@pytest.fixture(params=[*ISOLATING, "process"])
async def sandboxed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Tools]:
    """CodeTools of every backend (the scratch rules do not depend on isolation)."""
    made = await tools_for(request.param, tmp_path)
    yield made
    await made.close()


def _entries(root: Path) -> dict[str, os.stat_result]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            found[str(path.relative_to(root))] = path.lstat()
    return found


PLANT = """
import os, shutil, socket
shutil.copy("/bin/true", "suid")
os.chmod("suid", 0o4755)
os.makedirs("sgid-dir")
os.chmod("sgid-dir", 0o2775)
open("sgid-dir/file", "w").write("in a setgid dir")
os.mkfifo("fifo")
socket.socket(socket.AF_UNIX).bind("sock")
try:
    os.mknod("dev", 0o600 | 0o060000, os.makedev(1, 3))  # a block device, if allowed
except OSError:
    pass
os.symlink("/etc/shadow", "abs-link")
os.symlink("../../../outside", "escaping-link")
os.symlink("sgid-dir/file", "inner-link")
os.symlink("loop-b", "loop-a")
os.symlink("loop-a", "loop-b")
os.link("suid", "hard-link")
open("plain.txt", "w").write("kept")
os.chmod("plain.txt", 0o777)
print("planted")
"""


async def test_files_coming_back_are_normalised(
    sandboxed: Tools, tmp_path: Path, store: SqliteStore
) -> None:
    space = await _space(tmp_path / "scratch", store, "run-1", "fork-1")
    scratch = space.dir_of("run-1")
    tool = sandboxed.tool()
    first = await run_code(tool, PLANT, scratch)
    said, note = first.output.split("\n", 1)
    assert said == "planted", first.output
    # What was left out is said to the model.
    assert note.startswith("[not kept in the working directory: ")
    # (gVisor keeps FIFOs and sockets in its own kernel: they never reach the host.)
    special = ("fifo", "sock") if sandboxed.backend != "gvisor" else ()
    for name in ("abs-link", "escaping-link", "loop-a", *special):
        assert name in note
    found = _entries(scratch)
    assert (scratch / "plain.txt").read_text() == "kept"
    assert (scratch / "sgid-dir" / "file").read_text() == "in a setgid dir"
    assert os.readlink(scratch / "inner-link") == "sgid-dir/file"  # inside: kept as a link
    for name, info in found.items():
        assert info.st_uid == os.getuid() and info.st_gid == os.getgid(), name
        assert not info.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), name
        if name != "inner-link":  # a symlink's own mode is always 0777
            assert stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode), name
            assert not info.st_mode & stat.S_IWOTH, name
    for gone in ("fifo", "sock", "dev", "abs-link", "escaping-link", "loop-a", "loop-b"):
        assert gone not in found, gone
    assert stat.S_IMODE(found["suid"].st_mode) == 0o755
    assert stat.S_IMODE(found["hard-link"].st_mode) == 0o755
    # The run goes on, and a fork from its snapshot restores the same files.
    second = await run_code(tool, "import os; print(sorted(os.listdir()))", scratch, "c2")
    assert "fifo" not in second.output and "plain.txt" in second.output
    snapshot = await space.snapshot("run-1", 1)
    assert await space.restore("run-1", 1, "fork-1")
    assert _entries(space.dir_of("fork-1")).keys() == _entries(scratch).keys()
    with await _tar(store, snapshot.digest) as tar:
        assert all(m.isfile() or m.isdir() or m.issym() for m in tar.getmembers())


async def test_a_fork_survives_a_snapshot_with_special_files(
    tmp_path: Path, store: SqliteStore
) -> None:
    """Snapshots taken before normalisation existed may hold FIFOs or escaping links."""
    space = await _space(tmp_path / "scratch", store, "old-run", "fork")
    scratch = space.dir_of("old-run")
    (scratch / "data.txt").write_text("data")
    os.mkfifo(scratch / "fifo")
    os.symlink("/etc/shadow", scratch / "abs-link")
    await space.snapshot("old-run", 3)
    assert await space.restore("old-run", 3, "fork")
    restored = space.dir_of("fork")
    assert sorted(os.listdir(restored)) == ["data.txt"]


async def test_a_call_past_its_disk_quota_ends_disk_exceeded(
    sandboxed: Tools, tmp_path: Path
) -> None:
    scratch = tmp_path / "run"
    tool = sandboxed.tool(limits={"disk_mb": 8, "run_disk_mb": 64, "memory_mb": 128})
    kept = await run_code(tool, "open('kept.txt', 'w').write('before')", scratch)
    assert kept.trace["reason"] == "ok"
    flood = await run_code(
        tool,
        """
        import os
        try:
            with open("big.bin", "wb") as out:
                for _ in range(64):
                    out.write(os.urandom(1 << 20))
            print("WROTE 64 MB")
        except OSError as exc:
            print("refused", exc.strerror)
        open("kept.txt", "w").write("overwritten")
        """,
        scratch,
        "c2",
    )
    assert flood.trace["reason"] == "disk_exceeded", flood.output
    assert flood.is_error
    assert "disk quota" in flood.output and "discarded" in flood.output
    assert "WROTE 64 MB" not in flood.output
    # Nothing of the call is kept: the run's files are as they were before it.
    assert sorted(os.listdir(scratch)) == ["kept.txt", "main.py"]
    assert (scratch / "kept.txt").read_text() == "before"


async def test_a_call_past_its_file_quota_ends_disk_exceeded(
    sandboxed: Tools, tmp_path: Path
) -> None:
    scratch = tmp_path / "run"
    tool = sandboxed.tool(limits={"disk_files": 200})
    result = await run_code(
        tool,
        """
        made = 0
        try:
            for i in range(5000):
                open(f"f{i}", "w").close()
                made += 1
        except OSError as exc:
            print("refused", exc.strerror)
        print("made", made)
        """,
        scratch,
    )
    assert result.trace["reason"] == "disk_exceeded", result.output
    assert "made 5000" not in result.output
    assert sorted(os.listdir(scratch)) == ["main.py"]


async def test_the_run_quota_bounds_every_snapshot(
    sandboxed: Tools, tmp_path: Path, store: SqliteStore
) -> None:
    """Calls may each stay under their quota; together they stop at the run's."""
    space = await _space(tmp_path / "scratch", store, "run-1")
    scratch = space.dir_of("run-1")
    tool = sandboxed.tool(limits={"disk_mb": 6, "run_disk_mb": 10, "memory_mb": 128})
    write = "import os, sys; open(sys.argv[0] + '{n}.bin', 'wb').write(os.urandom(4 << 20))"
    reasons, snapshots = [], []
    for n in range(4):
        result = await run_code(tool, write.format(n=n), scratch, f"c{n}")
        reasons.append(result.trace["reason"])
        snapshots.append(await space.snapshot("run-1", n + 1))
    assert reasons == ["ok", "ok", "disk_exceeded", "disk_exceeded"]
    for snapshot in snapshots:
        assert snapshot.size < 10 * 2**20 + 64 * 1024


async def test_a_sparse_file_cannot_inflate_the_snapshot(
    sandboxed: Tools, tmp_path: Path, store: SqliteStore
) -> None:
    space = await _space(tmp_path / "scratch", store, "run-1")
    scratch = space.dir_of("run-1")
    tool = sandboxed.tool(limits={"disk_mb": 8, "run_disk_mb": 16})
    result = await run_code(
        tool,
        """
        try:
            with open("sparse.bin", "wb") as out:
                out.truncate(2 << 30)  # 2 GB that use no disk
            print("SPARSE")
        except OSError as exc:
            print("refused", exc.strerror)
        """,
        scratch,
    )
    assert result.trace["reason"] in ("ok", "disk_exceeded"), result.output
    snapshot = await space.snapshot("run-1", 1)
    assert snapshot.size < 16 * 2**20
    assert sum(p.stat().st_size for p in scratch.rglob("*")) < 16 * 2**20
