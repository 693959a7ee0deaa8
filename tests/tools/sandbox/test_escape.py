"""Real escape attempts against every backend that claims isolation; each must be contained.

Backends come from the registry, so gVisor is tested as soon as its module exists.
A backend whose probe fails is a failure under ``CI=true`` and a loud skip elsewhere.
"""

from __future__ import annotations

import ast
import asyncio
import os
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentrt.tools.sandbox.base import ExecResult, SandboxBackend, SandboxLimits, SandboxPolicy
from agentrt.tools.sandbox.cgroups import CgroupUnavailable, detect_layout
from agentrt.tools.sandbox.hostfs import etc_entries
from agentrt.tools.sandbox.registry import BACKENDS, make_backend
from tests.tools.sandbox import not_tested

ISOLATING = [name for name in BACKENDS if name != "process"]
_probed: dict[str, str | None] = {}  # backend -> why it does not work (None: it works)


def own_cgroups() -> list[Path]:
    """Sandbox cgroups of this test process still on the system."""
    try:
        layout = detect_layout()
    except CgroupUnavailable:
        return []
    prefix = f"agentrt-{os.getpid()}-"
    return [p for base in layout.base_dirs() for p in base.iterdir() if p.name.startswith(prefix)]


async def _why_not(name: str, workdir: Path) -> str | None:
    if name not in _probed:
        try:
            probe = await make_backend(name, workdir=workdir).probe()
            _probed[name] = None if probe.ok else probe.detail
        except Exception as exc:
            _probed[name] = f"{type(exc).__name__}: {exc}"
    return _probed[name]


@pytest.fixture(params=ISOLATING)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SandboxBackend]:
    """A working isolating backend with a fresh workdir; checks nothing leaks after the test."""
    name = request.param
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    why = await _why_not(name, workdir)
    if why is not None:
        not_tested(f"SANDBOX BACKEND {name!r} IS NOT TESTED: its probe failed: {why}")
    yield make_backend(name, workdir=workdir)
    assert own_cgroups() == []


async def run(
    backend: SandboxBackend,
    scratch: Path,
    code: str,
    *,
    env: dict[str, str] | None = None,
    read_paths: tuple[str, ...] = (),
    **limits: Any,
) -> ExecResult:
    """Run Python ``code`` in a new sandbox of ``backend`` and always clean it up."""
    scratch.mkdir(exist_ok=True)
    policy = SandboxPolicy(scratch, env=env or {}, read_paths=read_paths)
    sandbox = await backend.create(policy, SandboxLimits(**{"wall_s": 20, **limits}))
    try:
        return await sandbox.exec(["python3", "-I", "-c", textwrap.dedent(code)])
    finally:
        await sandbox.terminate()


async def test_no_network_to_a_host_listener(backend: SandboxBackend, tmp_path: Path) -> None:
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run(
            backend,
            tmp_path / "scratch",
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
                print("CONNECTED")
            except OSError as exc:
                print("BLOCKED", type(exc).__name__)
            """,
        )
        assert result.reason == "ok", result.stderr
        assert result.stdout.startswith("BLOCKED"), result.stdout
        assert accepted == []
        # The listener is real: the same connection from the host gets through.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        for _ in range(200):
            if accepted:
                break
            await asyncio.sleep(0.01)
        assert accepted == [1]
    finally:
        server.close()
        await server.wait_closed()


async def test_writes_outside_scratch_fail(backend: SandboxBackend, tmp_path: Path) -> None:
    granted = tmp_path / "granted"
    granted.mkdir()
    home_target = Path.home() / f"agentrt-escape-{os.getpid()}"
    # Read-only or absent inside the sandbox: every write must fail.
    denied = [str(home_target), "/usr/agentrt-escape", str(granted / "x")]
    # Under /tmp the sandbox has its own tmpfs: a write may succeed there, but
    # must never reach the host's file.
    host_only = [str(tmp_path / "outside.txt")]
    try:
        result = await run(
            backend,
            tmp_path / "scratch",
            f"""
            for path in {denied + host_only!r}:
                try:
                    with open(path, "w") as f:
                        f.write("escaped")
                    print("WROTE", path)
                except OSError as exc:
                    print("DENIED", path, type(exc).__name__)
            with open("/scratch/inside.txt", "w") as f:
                f.write("inside")
            """,
            read_paths=(str(granted),),
        )
        assert result.reason == "ok", result.stderr
        for path in denied:
            assert f"DENIED {path} " in result.stdout
        for path in denied + host_only:
            assert not Path(path).exists()
        assert (tmp_path / "scratch" / "inside.txt").read_text() == "inside"
    finally:
        home_target.unlink(missing_ok=True)


async def test_ungranted_files_are_unreadable(backend: SandboxBackend, tmp_path: Path) -> None:
    secret = tmp_path / "private" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET")
    granted = tmp_path / "granted"
    granted.mkdir()
    (granted / "data.txt").write_text("GRANTED-DATA")
    result = await run(
        backend,
        tmp_path / "scratch",
        f"""
        for path in ({str(secret)!r}, {str(granted / "data.txt")!r}):
            try:
                print(open(path).read())
            except OSError as exc:
                print("DENIED", type(exc).__name__)
        """,
        read_paths=(str(granted),),
    )
    assert result.reason == "ok", result.stderr
    assert "TOP-SECRET" not in result.stdout
    assert "DENIED" in result.stdout
    assert "GRANTED-DATA" in result.stdout


async def test_etc_holds_only_what_programs_need(backend: SandboxBackend, tmp_path: Path) -> None:
    result = await run(
        backend,
        tmp_path / "scratch",
        """
        import os
        print(sorted(os.listdir("/etc")))
        print(os.listdir("/etc/ssl/private") if os.path.isdir("/etc/ssl/private") else [])
        """,
    )
    assert result.reason == "ok", result.stderr
    seen, private = result.stdout.splitlines()
    allowed = {Path(path).name for path in etc_entries()}
    assert set(ast.literal_eval(seen)) <= allowed, seen  # e.g. no passwd, shadow, pip.conf, npmrc
    assert "passwd" not in seen and "shadow" not in seen
    assert private == "[]"


async def test_memory_bomb_is_oom_killed(backend: SandboxBackend, tmp_path: Path) -> None:
    result = await run(
        backend,
        tmp_path / "scratch",
        """
        chunks = []
        while True:
            chunks.append(b"x" * (1 << 20))
        """,
        memory_mb=64,
    )
    assert result.reason == "oom_killed"
    assert result.exit_code is None


async def test_fork_bomb_stops_at_the_pids_limit(backend: SandboxBackend, tmp_path: Path) -> None:
    marker = f"forkbomb-{os.getpid()}"
    result = await run(
        backend,
        tmp_path / "scratch",
        f"""
        import os
        {marker!r}
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        pids=16,
    )
    assert result.reason == "pids_exceeded"
    # The host is fine: it can start processes, and none of the bomb's are left.
    host_process = await asyncio.create_subprocess_exec("true")
    assert await host_process.wait() == 0
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                left.append(pid)
        except OSError:
            pass
    assert left == []
    again = await run(backend, tmp_path / "scratch", "print('alive')")
    assert (again.reason, again.stdout.strip()) == ("ok", "alive")


async def test_infinite_loop_times_out(backend: SandboxBackend, tmp_path: Path) -> None:
    result = await run(backend, tmp_path / "scratch", "while True: pass", wall_s=1, cpu_s=None)
    assert result.reason == "timeout"


async def test_cpu_loop_hits_the_cpu_limit(backend: SandboxBackend, tmp_path: Path) -> None:
    result = await run(backend, tmp_path / "scratch", "while True: pass", wall_s=20, cpu_s=0.5)
    assert result.reason == "cpu_exceeded"


async def test_output_flood_is_truncated_and_kept(backend: SandboxBackend, tmp_path: Path) -> None:
    size = 2 * 1024 * 1024
    result = await run(
        backend,
        tmp_path / "scratch",
        f"import sys; sys.stdout.write('0123456789abcdef' * {size // 16})",
        output_bytes=1000,
    )
    assert result.reason == "ok", result.stderr
    assert result.truncated
    head, _, marker = result.stdout.partition("\n[output truncated at 1000 bytes;")
    assert len(head) == 1000
    assert result.artifact is not None
    assert f"full output: artifact {result.artifact.name}]" in marker
    assert result.artifact.read_text() == "0123456789abcdef" * (size // 16)


async def test_only_allow_listed_env_is_visible(
    backend: SandboxBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRT_TEST_SECRET", "s3cr3t-from-runtime")
    result = await run(
        backend,
        tmp_path / "scratch",
        """
        import os
        print(sorted(os.environ.items()))
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if b"s3cr3t" in open(f"/proc/{pid}/environ", "rb").read():
                    print("LEAK in", pid)
            except OSError:
                pass
        """,
        env={"VISIBLE": "allowed-value"},
    )
    assert result.reason == "ok", result.stderr
    assert "('VISIBLE', 'allowed-value')" in result.stdout
    assert "s3cr3t" not in result.stdout
    assert "LEAK" not in result.stdout
