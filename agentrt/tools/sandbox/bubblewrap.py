"""The ``bubblewrap`` backend: Linux namespaces via ``bwrap``, limits via cgroups.

The command runs in new user, mount, PID, network, IPC, UTS and cgroup
namespaces with every capability dropped. Its file system is the host's
``/usr`` (and the ``/bin``, ``/lib*`` links or directories) plus a few files of
``/etc``, all read-only; a private ``/tmp``, ``/proc`` and ``/dev``; the scratch
directory at ``/scratch`` (the only writable host directory, and the working
directory); and each granted read path, read-only at the same path. The
network namespace is empty but for its loopback. With ``network: none`` there
is no network at all; with an allow-list the runtime serves an egress proxy
on that loopback (see :mod:`agentrt.tools.sandbox.egress`) and the command
gets ``HTTP_PROXY``/``HTTPS_PROXY`` pointing at it.

Limits: a cgroup per sandbox (memory without swap, pids, CPU seconds polled
from the CPU accounting, freezing for pause) set up *before* ``bwrap`` starts,
by a two-line ``sh`` that writes its own pid to the cgroup and then execs
``bwrap``; plus rlimits (CPU, file size, process count) on the launcher inside
as a second line of defence. The kernel exempts uid 0 from RLIMIT_NPROC, so
when the runtime runs as root the cgroup is the only process limit.

``snapshot`` copies the scratch directory: bubblewrap cannot checkpoint processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import resource
import shlex
import shutil
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agentrt.tools.sandbox.base import (
    EndReason,
    ExecResult,
    Prestart,
    ProbeResult,
    Sandbox,
    SandboxEvent,
    SandboxLimits,
    SandboxPolicy,
    SandboxUnavailable,
)
from agentrt.tools.sandbox.cgroups import (
    CgroupLayout,
    CgroupUnavailable,
    SandboxCgroup,
    detect_layout,
    reap_cgroups,
)
from agentrt.tools.sandbox.egress import EgressProxy, listen_in_netns, proxy_env
from agentrt.tools.sandbox.hostfs import HIDDEN_DIRS, SYSTEM_DIRS, etc_entries
from agentrt.tools.sandbox.process import MAX_FILE_BYTES, LauncherSandbox

__all__ = ["BubblewrapBackend", "BubblewrapSandbox"]

log = logging.getLogger(__name__)

OWN_TASKS = 2  # the bwrap monitor and the namespace's init, on top of the tool's pids


def system_binds() -> list[str]:
    """bwrap arguments exposing the host's programs and libraries read-only."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]  # merged /usr: /lib -> usr/lib
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in etc_entries():
        args += ["--ro-bind-try", path, path]
    for path in HIDDEN_DIRS:
        if os.path.isdir(path):
            args += ["--tmpfs", path, "--remount-ro", path]
    return args


class BubblewrapSandbox(LauncherSandbox):
    """One ``bwrap`` sandbox in its own cgroup."""

    backend = "bubblewrap"

    def __init__(
        self,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        workdir: Path,
        on_event: Callable[[SandboxEvent], None] | None,
        bwrap: str,
        layout: CgroupLayout,
        max_file_bytes: int,
    ) -> None:
        super().__init__(policy, limits, workdir=workdir, on_event=on_event)
        self._bwrap = bwrap
        self._layout = layout
        self._max_file_bytes = max_file_bytes
        self._cgroup: SandboxCgroup | None = None
        self._status: dict[str, Any] = {}
        self._have_pid = asyncio.Event()
        self._status_task: asyncio.Task[None] | None = None
        self._proxy: EgressProxy | None = None

    def _bwrap_args(self, status_fd: int, launcher_program: str) -> list[str]:
        args = [
            self._bwrap, "--unshare-all", "--unshare-user", "--cap-drop", "ALL",
            "--die-with-parent", "--new-session", "--hostname", "sandbox",
            *system_binds(),
            "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev",
            "--bind", str(self.policy.scratch), "/scratch",
        ]  # fmt: skip
        for path in self.policy.read_paths:
            args += ["--ro-bind", path, path]
        # bwrap builds the root on a tmpfs: make it read-only once the mounts exist,
        # so /scratch and /tmp are the only writable places.
        args += ["--remount-ro", "/"]
        args += ["--chdir", "/scratch", "--clearenv", "--json-status-fd", str(status_fd)]
        return [*args, "--", "/bin/sh", "-c", launcher_program]

    async def _spawn(self, launcher_program: str) -> asyncio.subprocess.Process:
        pids = None if self.limits.pids is None else self.limits.pids + OWN_TASKS
        try:
            self._cgroup = SandboxCgroup.create(
                f"agentrt-{os.getpid()}-{self.id}",
                memory_mb=self.limits.memory_mb,
                pids=pids,
                layout=self._layout,
            )
        except CgroupUnavailable as exc:
            raise SandboxUnavailable(str(exc)) from None
        status_r, status_w = os.pipe()
        join = " && ".join(f"echo $$ > {shlex.quote(str(f))}" for f in self._cgroup.procs_files)
        # Join the cgroup first: bwrap and everything it starts are then inside it.
        bwrap = shlex.join(self._bwrap_args(status_w, launcher_program))
        outer = f"{{ {join}; }} || exit 125; exec {bwrap}"
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", outer,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={}, pass_fds=(status_w,),
            )  # fmt: skip
        except BaseException:
            os.close(status_r)
            await self._release()
            raise
        finally:
            os.close(status_w)
        self._status_task = asyncio.create_task(self._read_status(status_r))
        return proc

    async def _read_status(self, fd: int) -> None:
        """Collect bwrap's JSON status lines: the child's pid, later its exit code."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0)
        )
        try:
            while line := await reader.readline():
                with contextlib.suppress(ValueError):
                    self._status.update(json.loads(line))
                if "child-pid" in self._status:
                    self._have_pid.set()
        finally:
            transport.close()

    async def _after_ready(self) -> None:
        async with asyncio.timeout(2):
            await self._have_pid.wait()
        if self.policy.network != "none":
            await self._start_proxy(int(self._status["child-pid"]), self.policy.network)
        pid, limits = _first_child(int(self._status["child-pid"])), self.limits
        if pid is None:
            log.debug("sandbox %s: launcher pid not found; rlimits not applied", self.id)
            return
        if limits.cpu_s is not None:
            # A backstop only: the cgroup's CPU accounting is polled and acts first.
            soft = math.ceil(limits.cpu_s) + 1
            resource.prlimit(pid, resource.RLIMIT_CPU, (soft, soft + 1))
        if limits.pids is not None:
            # Counted per user namespace: this sandbox's tasks only (uid 0 is exempt).
            resource.prlimit(pid, resource.RLIMIT_NPROC, (limits.pids + 1,) * 2)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (self._max_file_bytes,) * 2)

    async def _start_proxy(self, pid: int, rules: tuple[str, ...]) -> None:
        """Serve the allow-list proxy on a socket inside the sandbox's network namespace."""
        try:
            sock = await listen_in_netns(pid)
        except OSError as exc:
            raise SandboxUnavailable(f"cannot set up the egress proxy: {exc}") from None
        self._proxy = EgressProxy(rules)
        await self._proxy.serve(sock)

    def _command_env(self) -> Mapping[str, str]:
        if self._proxy is None:
            return self.policy.env
        return {**self.policy.env, **proxy_env(self._proxy.port)}

    def _egress(self) -> tuple[dict[str, object], ...]:
        if self._proxy is None:
            return ()
        return tuple(attempt.to_dict() for attempt in self._proxy.attempts)

    def _kill_all(self) -> None:
        if self._cgroup is not None:
            self._cgroup.kill_all()

    async def _freeze(self) -> None:
        assert self._cgroup is not None
        await self._cgroup.freeze()

    def _thaw(self) -> None:
        if self._cgroup is not None:
            self._cgroup.thaw()

    def _limit_hit(self) -> EndReason | None:
        group = self._cgroup
        if group is None:
            return None
        if group.oom_kills() > 0:
            return "oom_killed"
        if group.pids_max_hits() > 0:
            return "pids_exceeded"
        cpu = group.cpu_seconds()
        if self.limits.cpu_s is not None and cpu is not None and cpu >= self.limits.cpu_s:
            return "cpu_exceeded"
        return None

    def _classify(self, returncode: int) -> tuple[EndReason, int | None]:
        hit = self._limit_hit()
        if hit is not None:
            return hit, None
        code = self._status.get("exit-code")
        if not isinstance(code, int):
            return "sandbox_crashed", None  # bwrap ended without its child's exit status
        if code == 128 + signal.SIGXCPU:
            return "cpu_exceeded", None
        return "ok", code

    async def _settle(self) -> None:
        # The exit code arrives on the status pipe, which closes when bwrap exits.
        if self._status_task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(1):
                    await asyncio.shield(self._status_task)

    def _usage(self) -> tuple[float | None, int | None]:
        if self._cgroup is None:
            return None, None
        return self._cgroup.cpu_seconds(), self._cgroup.peak_memory()

    async def _release(self) -> None:
        if self._proxy is not None:
            await self._proxy.close()
        if self._status_task is not None and not self._status_task.done():
            self._status_task.cancel()
        if self._cgroup is not None and not await self._cgroup.remove():
            log.warning("sandbox %s: cgroup %s not removed", self.id, self._cgroup.name)


def _first_child(pid: int) -> int | None:
    """The first child of ``pid`` (procfs: answered from memory, never blocks)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _check_read_paths(paths: tuple[str, ...]) -> None:
    for path in paths:
        if not path.startswith("/") or os.path.normpath(path) == "/":
            raise SandboxUnavailable(f"read path {path!r} must be an absolute path below /")


class BubblewrapBackend:
    """Sandboxes made with bubblewrap and cgroups (see the module docstring)."""

    name = "bubblewrap"
    strength = 2
    supports_network_allowlist = True

    def __init__(self, *, workdir: Path, max_file_bytes: int = MAX_FILE_BYTES) -> None:
        self.workdir = workdir
        self.max_file_bytes = max_file_bytes
        self.bwrap = shutil.which("bwrap")
        self._layout: CgroupLayout | None = None

    def _ready(self) -> CgroupLayout:
        if self.bwrap is None:
            raise SandboxUnavailable("bwrap is not installed (package `bubblewrap`)")
        if self._layout is None:
            try:
                self._layout = detect_layout()
            except (CgroupUnavailable, OSError) as exc:
                raise SandboxUnavailable(f"no usable cgroups for limits: {exc}") from None
        return self._layout

    async def probe(self) -> ProbeResult:
        """Run python3 in a sandbox twice: once normally, once past a 32 MB memory limit."""
        from agentrt.tools.sandbox.pool import scratch_dir

        limits = SandboxLimits(wall_s=20, memory_mb=32)
        try:
            async with scratch_dir(self.workdir / "scratch") as scratch:
                policy = SandboxPolicy(scratch)
                ok = await self._run(policy, limits, "print('ok')")
                bomb = await self._run(policy, limits, "b = [b' ' * (1 << 20) for _ in range(512)]")
        except (SandboxUnavailable, OSError) as exc:
            return ProbeResult(self.name, False, str(exc))
        if ok.reason != "ok" or ok.stdout.strip() != "ok":
            why = ok.stderr.strip()[-300:] or ok.reason
            return ProbeResult(self.name, False, f"self-test failed: {why}")
        if bomb.reason != "oom_killed":
            return ProbeResult(self.name, False, f"memory limit not enforced (ended {bomb.reason})")
        layout = self._ready()
        return ProbeResult(
            self.name,
            True,
            f"works: namespaces, cgroup v{layout.version} limits, no network "
            "(or an allow-list through the egress proxy)",
        )

    async def _run(self, policy: SandboxPolicy, limits: SandboxLimits, code: str) -> ExecResult:
        sandbox = await self.create(policy, limits)
        try:
            return await sandbox.exec(["python3", "-I", "-c", code])
        finally:
            await sandbox.terminate()

    async def create(
        self,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        on_event: Callable[[SandboxEvent], None] | None = None,
        prestart: Prestart | None = None,
    ) -> Sandbox:
        """A ready sandbox: namespaces, cgroup and rlimits set, waiting for its command.

        ``prestart`` is ignored: the launcher's one exec costs a few milliseconds here.

        Raises:
            SandboxUnavailable: bwrap or cgroups are missing, bwrap failed to set
                the sandbox up, or the egress proxy of a network allow-list could not
                be placed in its network namespace.
        """
        layout = self._ready()
        _check_read_paths(policy.read_paths)
        sandbox = BubblewrapSandbox(
            policy, limits, workdir=self.workdir, on_event=on_event, bwrap=self.bwrap or "bwrap",
            layout=layout, max_file_bytes=self.max_file_bytes,
        )  # fmt: skip
        await sandbox.start()
        return sandbox

    async def reap(self) -> int:
        """Remove cgroups (killing their processes) and scratch dirs of dead runtimes."""
        from agentrt.tools.sandbox.pool import reap_scratch

        layout = None
        with contextlib.suppress(SandboxUnavailable):
            layout = self._ready()
        cgroups = await reap_cgroups(layout) if layout is not None else 0
        return cgroups + await reap_scratch(self.workdir)
