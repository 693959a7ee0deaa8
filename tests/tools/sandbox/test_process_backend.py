"""The process backend: refused for model code unless allowed; rlimits and timeouts work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentrt.errors import UsageError
from agentrt.tools.sandbox import registry, selection
from agentrt.tools.sandbox.base import ExecResult, SandboxLimits, SandboxPolicy
from agentrt.tools.sandbox.process import ProcessBackend


async def run(backend: ProcessBackend, scratch: Path, code: str, **limits: float) -> ExecResult:
    sandbox = await backend.create(SandboxPolicy(scratch), SandboxLimits(**limits))  # type: ignore[arg-type]
    try:
        return await sandbox.exec(["python3", "-I", "-c", code])
    finally:
        await sandbox.terminate()


async def test_refused_for_model_code_without_allow_unsafe(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="allow_unsafe: true"):
        await selection.choose_backend(
            "process", allow_unsafe=False, policy_needs_network_allowlist=False, workdir=tmp_path
        )
    chosen = await selection.choose_backend(
        "process", allow_unsafe=True, policy_needs_network_allowlist=False, workdir=tmp_path
    )
    assert chosen.name == "process"


async def test_auto_never_falls_back_to_process_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in registry.BACKENDS if n != "process"]:
        monkeypatch.delitem(registry.BACKENDS, name)
    with pytest.raises(UsageError, match="process: refused"):
        await selection.choose_backend(
            "auto", allow_unsafe=False, policy_needs_network_allowlist=False, workdir=tmp_path
        )
    chosen = await selection.choose_backend(
        "auto", allow_unsafe=True, policy_needs_network_allowlist=False, workdir=tmp_path
    )
    assert chosen.name == "process"


async def test_probe_says_it_isolates_nothing(tmp_path: Path) -> None:
    probe = await ProcessBackend(workdir=tmp_path).probe()
    assert probe.ok
    assert "isolates nothing" in probe.detail


async def test_memory_rlimit(tmp_path: Path) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))"
    result = await run(ProcessBackend(workdir=tmp_path), tmp_path, code, memory_mb=64)
    # RLIMIT_AS makes the allocation fail; the program ends with its own error.
    assert (result.reason, result.exit_code) == ("ok", 1)
    assert "MemoryError" in result.stderr


async def test_cpu_rlimit(tmp_path: Path) -> None:
    result = await run(ProcessBackend(workdir=tmp_path), tmp_path, "while True: pass", cpu_s=1)
    assert result.reason == "cpu_exceeded"


async def test_file_size_rlimit(tmp_path: Path) -> None:
    backend = ProcessBackend(workdir=tmp_path, max_file_bytes=1 << 20)
    code = "open('big.bin', 'wb').write(b'x' * (2 << 20))"
    result = await run(backend, tmp_path, code)
    assert result.exit_code != 0
    assert "File too large" in result.stderr
    assert (tmp_path / "big.bin").stat().st_size <= 1 << 20


async def test_wall_timeout_kills_the_process_group(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)"
    )
    result = await run(ProcessBackend(workdir=tmp_path), tmp_path, code, wall_s=1)
    assert result.reason == "timeout"
    child = int(result.stdout)
    # The child it started is killed with it (reaped by init once orphaned).
    for _ in range(200):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            break
        if cmdline != b"sleep\x00300\x00":
            break  # the pid was reused by something else
        await asyncio.sleep(0.01)
    else:
        raise AssertionError(f"the sandbox's child {child} survived the timeout")


async def test_environment_is_only_the_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRT_TEST_SECRET", "s3cr3t")
    backend = ProcessBackend(workdir=tmp_path)
    sandbox = await backend.create(SandboxPolicy(tmp_path, env={"ONLY": "this"}), SandboxLimits())
    try:
        result = await sandbox.exec(["env"])
    finally:
        await sandbox.terminate()
    assert result.stdout == "ONLY=this\n"
