"""The ``bubblewrap`` backend: Linux namespaces via ``bwrap``, limits via cgroups.

The command runs in new user, mount, PID, network, IPC, UTS and cgroup
namespaces, as an unprivileged user inside and out: the runtime's own user,
or, when the runtime is root, the sandbox user of :mod:`.identity` (``bwrap``
itself is started as that user, through ``setpriv``, so the sandbox's user
namespace maps no host root at all). It holds no capability, cannot create
user namespaces (``--disable-userns``), and a seccomp filter
(:mod:`.seccomp`) denies the kernel surface agent code never needs. Its file
system is the host's ``/usr`` (and the ``/bin``, ``/lib*`` links or
directories) plus a few files of ``/etc``, all read-only; a private ``/tmp``
(a tmpfs of ``limits.disk_mb``), ``/proc`` and ``/dev``; the scratch volume at
``/scratch`` (the working directory); and each granted read path, read-only
at the same path. When the sandbox user is not the runtime's, scratch and read
paths are staged first (:mod:`.staging`), so it needs no access to the
directories above them. ``/proc/sys`` is read-only, even the knobs of the
sandbox's own namespaces; the other kernel knobs belong to the host's root, out
of reach. The network namespace is empty but for its loopback. With
``network: none`` there is no network at all; with an allow-list the runtime
serves an egress proxy on that loopback (see :mod:`agentrt.tools.sandbox.egress`)
and the command gets ``HTTP_PROXY``/``HTTPS_PROXY`` pointing at it.

Limits: a cgroup per sandbox (memory without swap, pids, CPU seconds polled
from the CPU accounting, freezing for pause) set up *before* ``bwrap`` starts,
by a two-line ``sh`` that writes its own pid to the cgroup and then execs
``bwrap``; the cgroup's files belong to root, and the sandbox cannot mount
cgroupfs, so it cannot raise them. Plus rlimits (CPU, file size, process
count) on the launcher inside as a second line of defence.

``snapshot`` copies the scratch directory: bubblewrap cannot checkpoint processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentrt._text import count
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
    largest_file,
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
from agentrt.tools.sandbox.identity import SandboxUser, sandbox_user
from agentrt.tools.sandbox.launcher import LauncherSandbox, with_rlimits
from agentrt.tools.sandbox.process import MAX_FILE_BYTES
from agentrt.tools.sandbox.seccomp import DENIED, SeccompUnavailable, compile_filter
from agentrt.tools.sandbox.staging import Stage, reap_stages

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
        user: SandboxUser,
        seccomp: bytes,
    ) -> None:
        super().__init__(policy, limits, workdir=workdir, on_event=on_event)
        self._bwrap = bwrap
        self._layout = layout
        self._max_file_bytes = min(max_file_bytes, largest_file(limits))
        self._user = user
        self._seccomp = seccomp
        self._cgroup: SandboxCgroup | None = None
        self._status: dict[str, Any] = {}
        self._have_pid = asyncio.Event()
        self._status_task: asyncio.Task[None] | None = None
        self._proxy: EgressProxy | None = None
        self._stage: Stage | None = None

    def _bwrap_args(self, fds: _Fds, stage: Stage, launcher_program: str) -> list[str]:
        user = self._user
        args = [
            self._bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
            "--uid", str(user.uid), "--gid", str(user.gid), "--cap-drop", "ALL",
            "--die-with-parent", "--new-session", "--hostname", "sandbox",
            *system_binds(),
            "--size", str(self.limits.disk_mb << 20), "--tmpfs", "/tmp",
            "--proc", "/proc", "--dev", "/dev",
            # bwrap covers /proc/sys only if it can write the directory, which it cannot;
            # the knobs of the sandbox's own namespaces (pid_max, the IPC limits) inside
            # it would stay writable. Its values follow the reader's namespaces.
            "--ro-bind", "/proc/sys", "/proc/sys",
            "--bind", str(stage.scratch), "/scratch",
        ]  # fmt: skip
        for staged, path in zip(stage.read_paths, self.policy.read_paths, strict=True):
            args += ["--ro-bind", str(staged), path]
        # bwrap builds the root on a tmpfs: make it read-only once the mounts exist,
        # so /scratch and /tmp are the only writable places.
        args += ["--remount-ro", "/"]
        args += ["--chdir", "/scratch", "--clearenv", "--json-status-fd", str(fds.status)]
        args += ["--seccomp", str(fds.seccomp)]
        return [*args, "--", *with_rlimits(self._rlimits(), ["/bin/sh", "-c", launcher_program])]

    def _as_user(self) -> list[str]:
        """The command prefix that starts bwrap as the sandbox user (nothing if it is ours)."""
        user = self._user
        if user.is_runtime:
            return []
        return [
            "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        ]  # fmt: skip

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
        policy = self.policy
        try:
            self._stage = await asyncio.to_thread(
                Stage.prepare, self._user, self._cgroup.name, policy.scratch, policy.read_paths
            )
            fds = await asyncio.to_thread(_Fds.open, self._seccomp)
        except OSError as exc:
            await self._release()
            raise SandboxUnavailable(f"cannot set up the sandbox's files: {exc}") from None
        join = " && ".join(f"echo $$ > {shlex.quote(str(f))}" for f in self._cgroup.procs_files)
        # Join the cgroup first (as root, if we are): bwrap and everything it starts are
        # then inside it. Then become the sandbox user and exec bwrap.
        args = self._bwrap_args(fds, self._stage, launcher_program)
        bwrap = shlex.join([*self._as_user(), *args])
        outer = f"{{ {join}; }} || exit 125; exec {bwrap}"
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", outer,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={}, pass_fds=fds.passed(), cwd="/",
            )  # fmt: skip
        except BaseException:
            os.close(fds.status_read)
            await self._release()
            raise
        finally:
            fds.close_passed()
        self._status_task = asyncio.create_task(self._read_status(fds.status_read))
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

    def _rlimits(self) -> dict[str, tuple[int, int]]:
        """The launcher's rlimits, a second line of defence behind the cgroup."""
        limits = self.limits
        rlimits = {"fsize": (self._max_file_bytes,) * 2}
        if limits.cpu_s is not None:
            # A backstop only: the cgroup's CPU accounting is polled and acts first.
            soft = math.ceil(limits.cpu_s) + 1
            rlimits["cpu"] = (soft, soft + 1)
        if limits.pids is not None:
            # Counted per user namespace: this sandbox's tasks only. Past the cgroup's
            # limit, so that the cgroup stops a fork bomb first and says so.
            rlimits["nproc"] = (limits.pids + OWN_TASKS + 1,) * 2
        return rlimits

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

    async def _thaw(self) -> None:
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
        if self._stage is not None:
            await asyncio.to_thread(self._stage.remove)


@dataclass(slots=True)
class _Fds:
    """The descriptors bwrap gets: its status pipe and its seccomp program."""

    status_read: int
    status: int
    seccomp: int

    @classmethod
    def open(cls, seccomp: bytes) -> _Fds:
        """Open them (blocking); on failure, none stays open."""
        status_read, status = os.pipe()
        try:
            program = os.memfd_create("agentrt-seccomp", os.MFD_CLOEXEC)
        except BaseException:
            os.close(status_read)
            os.close(status)
            raise
        os.write(program, seccomp)
        os.lseek(program, 0, os.SEEK_SET)
        return cls(status_read, status, program)

    def passed(self) -> tuple[int, ...]:
        """The descriptors bwrap inherits."""
        return (self.status, self.seccomp)

    def close_passed(self) -> None:
        """Close our copies once bwrap has its own."""
        for fd in self.passed():
            os.close(fd)


def _check_read_paths(paths: tuple[str, ...]) -> None:
    for path in paths:
        if not path.startswith("/") or os.path.normpath(path) == "/":
            raise SandboxUnavailable(f"read path {path!r} must be an absolute path below /")


class BubblewrapBackend:
    """Sandboxes made with bubblewrap and cgroups (see the module docstring)."""

    name = "bubblewrap"
    strength = 2
    supports_network_allowlist = True

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
        self.bwrap = shutil.which("bwrap")
        self._layout: CgroupLayout | None = None
        self._seccomp: bytes | None = None

    def _ready(self) -> tuple[CgroupLayout, bytes]:
        if self.bwrap is None:
            raise SandboxUnavailable("bwrap is not installed (package `bubblewrap`)")
        if not self.user.is_runtime and shutil.which("setpriv") is None:
            raise SandboxUnavailable("setpriv is not installed (package `util-linux`)")
        if self._layout is None:
            try:
                self._layout = detect_layout()
            except (CgroupUnavailable, OSError) as exc:
                raise SandboxUnavailable(f"no usable cgroups for limits: {exc}") from None
        if self._seccomp is None:
            try:
                self._seccomp = compile_filter()
            except SeccompUnavailable as exc:
                raise SandboxUnavailable(f"no seccomp filter: {exc}") from None
        return self._layout, self._seccomp

    async def probe(self) -> ProbeResult:
        """Run python3 in a sandbox twice: once to check who it runs as and that the
        seccomp filter is on, once past a 32 MB memory limit."""
        from agentrt.tools.sandbox.pool import scratch_dir

        limits = SandboxLimits(wall_s=20, memory_mb=32)
        check = (
            "import os; print(os.getuid(), os.getgid(), "
            "open('/proc/self/status').read().split('Seccomp:')[1].split()[0])"
        )
        try:
            async with scratch_dir(self.workdir, self.user) as volume:
                policy = SandboxPolicy(volume.path)
                ok = await self._run(policy, limits, check)
                bomb = await self._run(policy, limits, "b = [b' ' * (1 << 20) for _ in range(512)]")
                quota = "enforced by a tmpfs per sandbox" if volume.enforced else "measured"
        except (SandboxUnavailable, OSError) as exc:
            return ProbeResult(self.name, False, str(exc))
        expected = f"{self.user.uid} {self.user.gid} 2"
        if ok.reason != "ok" or ok.stdout.strip() != expected:
            why = ok.stderr.strip()[-300:] or f"{ok.reason}: {ok.stdout.strip()!r}"
            return ProbeResult(self.name, False, f"self-test failed: {why}")
        if bomb.reason != "oom_killed":
            return ProbeResult(self.name, False, f"memory limit not enforced (ended {bomb.reason})")
        layout, _ = self._ready()
        return ProbeResult(
            self.name,
            True,
            f"works: runs as uid {self.user.uid} and gid {self.user.gid} (not root), seccomp "
            f"filter denying {count(len(DENIED), 'system call')} and new namespaces, disk quota "
            f"{quota}, cgroup v{layout.version} limits, no network (or an allow-list through "
            "the egress proxy)",
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
        layout, seccomp = self._ready()
        _check_read_paths(policy.read_paths)
        await asyncio.to_thread(self.user.give, policy.scratch)
        sandbox = BubblewrapSandbox(
            policy, limits, workdir=self.workdir, on_event=on_event, bwrap=self.bwrap or "bwrap",
            layout=layout, max_file_bytes=self.max_file_bytes, user=self.user, seccomp=seccomp,
        )  # fmt: skip
        await sandbox.start()
        return sandbox

    async def reap(self) -> int:
        """Remove cgroups (killing their processes) and scratch dirs of dead runtimes."""
        from agentrt.tools.sandbox.pool import reap_scratch

        layout = None
        with contextlib.suppress(SandboxUnavailable):
            layout, _ = self._ready()
        cgroups = await reap_cgroups(layout) if layout is not None else 0
        await asyncio.to_thread(reap_stages)  # a sandbox's, counted with its cgroup
        return cgroups + await reap_scratch(self.workdir)
