"""The ``process`` backend: a plain subprocess with rlimits, for trusted code only.

It isolates nothing (network, files and the process count of its user are not
limited); it exists for trusted code and machines without bubblewrap or
gVisor, and ``choose_backend`` refuses it for model-written code unless
``allow_unsafe`` is set. Even so, when the runtime is root the command runs
as the unprivileged sandbox user (see :mod:`.identity`), never as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
from collections.abc import Callable
from pathlib import Path

from agentrt.tools.sandbox.base import (
    EndReason,
    Prestart,
    ProbeResult,
    Sandbox,
    SandboxEvent,
    SandboxLimits,
    SandboxPolicy,
    SandboxUnavailable,
    largest_file,
)
from agentrt.tools.sandbox.identity import SandboxUser, sandbox_user
from agentrt.tools.sandbox.launcher import LauncherSandbox, with_rlimits
from agentrt.tools.sandbox.staging import Stage, reap_stages

__all__ = ["MAX_FILE_BYTES", "ProcessBackend", "ProcessSandbox"]

MAX_FILE_BYTES = 1024 * 1024 * 1024  # RLIMIT_FSIZE: no single file larger than this, ever


class ProcessSandbox(LauncherSandbox):
    """A subprocess in its own session, limited by rlimits only."""

    backend = "process"

    def __init__(
        self,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        workdir: Path,
        on_event: Callable[[SandboxEvent], None] | None,
        max_file_bytes: int,
        user: SandboxUser,
    ) -> None:
        super().__init__(policy, limits, workdir=workdir, on_event=on_event)
        self._max_file_bytes = min(max_file_bytes, largest_file(limits))
        self._user = user
        self._stage: Stage | None = None

    async def _spawn(self, launcher_program: str) -> asyncio.subprocess.Process:
        # The working directory is entered before the uid changes: the sandbox user
        # may not be able to reach it through the runtime's own directories.
        user = self._user
        drop = not user.is_runtime
        name = f"agentrt-{os.getpid()}-{self.id}"
        stage = self._stage = await asyncio.to_thread(
            Stage.prepare, user, name, self.policy.scratch, ()
        )
        argv = with_rlimits(await self._rlimits(), ["/bin/sh", "-c", launcher_program])
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=stage.scratch, env={},
                start_new_session=True, user=user.uid if drop else None,
                group=user.gid if drop else None, extra_groups=[] if drop else None,
            )  # fmt: skip
        except BaseException:
            await self._release()
            raise

    async def _release(self) -> None:
        if self._stage is not None:
            await asyncio.to_thread(self._stage.remove)

    async def _rlimits(self) -> dict[str, tuple[int, int]]:
        limits = self.limits
        rlimits = {"fsize": (self._max_file_bytes,) * 2}
        if limits.cpu_s is not None:
            # SIGXCPU at the limit (so the end is recognisable), SIGKILL a second later.
            soft = max(1, math.ceil(limits.cpu_s))
            rlimits["cpu"] = (soft, soft + 1)
        if limits.memory_mb is not None:
            rlimits["as"] = (limits.memory_mb << 20,) * 2
        if limits.pids is not None:
            # RLIMIT_NPROC counts every task of the user, not just this group's.
            tasks = await asyncio.to_thread(_user_tasks, self._user.uid)
            rlimits["nproc"] = (tasks + limits.pids,) * 2
        return rlimits

    def _signal(self, sig: int) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)

    def _kill_all(self) -> None:
        self._signal(signal.SIGKILL)

    async def _freeze(self) -> None:
        self._signal(signal.SIGSTOP)
        # SIGSTOP is asynchronous: wait until the launcher's process is stopped.
        assert self._proc is not None
        async with asyncio.timeout(5):
            while _proc_state(self._proc.pid) not in ("T", "t", "Z", ""):  # noqa: ASYNC110
                await asyncio.sleep(0.001)

    async def _thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def _classify(self, returncode: int) -> tuple[EndReason, int | None]:
        if returncode == -signal.SIGXCPU:
            return "cpu_exceeded", None
        return "ok", returncode if returncode >= 0 else 128 - returncode


def _proc_state(pid: int) -> str:
    """The state letter of ``pid`` (procfs: answered from memory), "" if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _user_tasks(uid: int) -> int:
    """Tasks (threads) of ``uid`` now: what RLIMIT_NPROC is compared with."""
    count = 0
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == uid:
                        count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


class ProcessBackend:
    """Runs commands as plain subprocesses: limits by rlimits, no isolation at all."""

    name = "process"
    strength = 1
    supports_network_allowlist = True  # nothing is enforced; see probe()

    def __init__(
        self,
        *,
        workdir: Path,
        max_file_bytes: int = MAX_FILE_BYTES,
        user: SandboxUser | None = None,
    ) -> None:
        self.workdir = workdir
        self.max_file_bytes = max_file_bytes
        self.user = user or sandbox_user()

    async def probe(self) -> ProbeResult:
        """Run ``sh -c`` to check subprocesses work; the detail says what is not isolated."""
        from agentrt.tools.sandbox.pool import scratch_dir

        try:
            async with scratch_dir(self.workdir, self.user) as volume:
                sandbox = await self.create(SandboxPolicy(volume.path), SandboxLimits(wall_s=10))
                result = await sandbox.exec(["sh", "-c", "echo ok"])
                await sandbox.terminate()
        except (SandboxUnavailable, OSError) as exc:
            return ProbeResult(self.name, False, f"cannot start a subprocess: {exc}")
        if result.reason != "ok" or result.stdout.strip() != "ok":
            return ProbeResult(self.name, False, f"self-test failed: {result.reason}")
        return ProbeResult(
            self.name,
            True,
            f"works, but isolates nothing: network and files are not limited; runs as uid "
            f"{self.user.uid}; only for trusted code (allow_unsafe)",
        )

    async def create(
        self,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        on_event: Callable[[SandboxEvent], None] | None = None,
        prestart: Prestart | None = None,
    ) -> Sandbox:
        """A started launcher in a new session, with rlimits applied (``prestart`` is ignored:
        a host process starts fast)."""
        await asyncio.to_thread(self.user.give, policy.scratch)
        sandbox = ProcessSandbox(
            policy, limits, workdir=self.workdir, on_event=on_event,
            max_file_bytes=self.max_file_bytes, user=self.user,
        )  # fmt: skip
        await sandbox.start()
        return sandbox

    async def reap(self) -> int:
        """Remove scratch directories left by dead runtimes.

        Processes a crashed runtime left behind cannot be found (there is no
        cgroup to list them): one more reason this backend is for trusted code.
        """
        from agentrt.tools.sandbox.pool import reap_scratch

        await asyncio.to_thread(reap_stages)
        return await reap_scratch(self.workdir)
