"""The gVisor backend: each sandbox is a ``runsc`` container (strength 3).

``create()`` writes an OCI bundle and starts ``runsc run`` on it, in the
foreground, with the launcher of :mod:`.launcher` as the container's init: the
sandbox is up (~200 ms) and waits for its command on a pipe. The command
replaces the launcher (``exec``), so it *is* the container's init, and the
exit status of ``runsc run`` (our own child process) is the command's, as
gVisor's kernel saw it: nothing the command can write reaches the runtime
except its stdout and stderr, which are pipes the runtime drains and caps
exactly as for bubblewrap. With a :class:`Prestart` the launcher becomes the
program itself (the code tool's Python), already loaded and waiting for its
``go``: the model's code starts a few milliseconds after ``exec()``.
``runsc do`` is never used: it cannot enforce memory or process limits.

The command sees an empty read-only root with read-only binds of the host's
system directories and the few /etc entries of :mod:`hostfs`, a private tmpfs
/tmp, the ``read_paths`` read-only and the scratch volume at ``/scratch`` (its
cwd), the only writable place; nothing of /root, /home, the host's /tmp or the
runtime's data dir. It runs as the unprivileged sandbox user of
:mod:`.identity` (never uid 0, inside or out), without capabilities, with
exactly the policy's environment. Network: ``none`` only (``--network=none``);
allow-lists are for bubblewrap, whose network namespace the runtime can serve
an egress proxy into.

Limits, as this runsc (Debian's 0.0~20221219, ptrace platform) enforces them:
``runsc`` is started inside a cgroup of ours and told to leave cgroups alone
(``--ignore-cgroups``), so the whole sandbox, gVisor's own kernel included,
is in that cgroup: memory (the host OOM killer ends the sandbox: the cgroup's
``oom_kill`` counter), CPU seconds (the cgroup's accounting, polled), freezing
for pause, and killing. Processes are RLIMIT_NPROC inside gVisor (forks fail
with EAGAIN) plus a once-a-second ``runsc events`` sample that ends the
sandbox at the limit; the host pids limit is only a safety net, as gVisor's
own threads count there. CPU time is also RLIMIT_CPU inside (SIGXCPU).
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
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentrt._owner import new_owner_id, owner_is_dead
from agentrt.tools.sandbox.base import (
    EndReason,
    ExecResult,
    Prestart,
    ProbeResult,
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
from agentrt.tools.sandbox.hostfs import HIDDEN_DIRS, SYSTEM_DIRS, etc_entries
from agentrt.tools.sandbox.identity import SandboxUser, sandbox_user
from agentrt.tools.sandbox.launcher import LauncherSandbox
from agentrt.tools.sandbox.process import MAX_FILE_BYTES

__all__ = ["GvisorBackend", "GvisorSandbox"]

log = logging.getLogger(__name__)

_NO_CAPS: dict[str, list[str]] = {"bounding": [], "effective": [], "permitted": []}
_SIGXCPU_EXIT = 128 + signal.SIGXCPU
_RUNSC_FAILED = 128  # what runsc exits with when it, not the command, failed
_OWN_THREADS = 256  # gVisor's own threads, on top of the command's, for the host pids net
_SAMPLE_AFTER_S = 0.25  # most commands are done by then: spare them a `runsc events`


class GvisorSandbox(LauncherSandbox):
    """One runsc container for one command; see the module docstring."""

    backend = "gvisor"
    ready_timeout_s = 60.0  # a first boot loads gVisor's kernel from disk

    def __init__(
        self,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        workdir: Path,
        on_event: Callable[[SandboxEvent], None] | None,
        prestart: Prestart | None,
        runsc: str,
        user: SandboxUser,
        layout: CgroupLayout,
        owner: str,
    ) -> None:
        super().__init__(policy, limits, workdir=workdir, on_event=on_event, prestart=prestart)
        self.bundle = workdir / "bundles" / f"agentrt-{os.getpid()}-{self.id}"
        self._runsc = runsc
        self._user = user
        self._layout = layout
        self._owner = owner
        self._cgroup: SandboxCgroup | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._pids_hit = False

    def runsc(self, *args: str) -> list[str]:
        """A runsc command line for this sandbox's container."""
        state = self.bundle / "state"
        return [self._runsc, "--root", str(state), "--network=none", "--ignore-cgroups", *args]

    async def _spawn(self, launcher_program: str) -> asyncio.subprocess.Process:
        pids = None if self.limits.pids is None else _OWN_THREADS + 16 * self.limits.pids
        try:
            self._cgroup = SandboxCgroup.create(
                self.bundle.name, memory_mb=self.limits.memory_mb, pids=pids, layout=self._layout
            )
        except CgroupUnavailable as exc:
            raise SandboxUnavailable(str(exc)) from None
        try:
            await asyncio.to_thread(self._write_bundle, launcher_program)
        except (OSError, ValueError) as exc:
            await self._release()
            raise SandboxUnavailable(f"cannot write the sandbox's bundle: {exc}") from None
        join = " && ".join(f"echo $$ > {shlex.quote(str(f))}" for f in self._cgroup.procs_files)
        run = self.runsc(f"--log={self.bundle / 'runsc.log'}", "run", "--bundle", str(self.bundle))
        outer = f"{{ {join}; }} || exit 125; exec {shlex.join([*run, self.id])}"
        try:
            return await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", outer,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={}, cwd="/",
            )  # fmt: skip
        except BaseException:
            await self._release()
            raise

    async def exec(self, argv: Sequence[str], *, stdin: bytes | None = None) -> ExecResult:
        """Run ``argv`` to its end (or its limit) and report what happened.

        A sandbox runs one command; a second call raises ``RuntimeError``, and
        so does a command other than the one a pre-started sandbox runs.
        """
        if self.limits.pids is not None and self._sampler is None and not self._used:
            self._sampler = asyncio.create_task(self._sample_pids(self.limits.pids))
        return await super().exec(argv, stdin=stdin)

    async def _sample_pids(self, limit: int) -> None:
        """Note when a once-a-second sample shows the command at its process limit."""
        await asyncio.sleep(_SAMPLE_AFTER_S)
        proc = await asyncio.create_subprocess_exec(
            *self.runsc("events", "--interval=1", self.id),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        try:
            async for line in proc.stdout:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    if int(json.loads(line)["data"]["pids"]["current"]) >= limit:
                        self._pids_hit = True
                        return
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

    def _kill_all(self) -> None:
        if self._cgroup is not None:
            self._cgroup.kill_all()

    async def _freeze(self) -> None:
        # gVisor stops its own tasks: the cgroup freezer can wait long on the ptrace
        # platform's stub processes, and a kill must still reach a paused sandbox.
        await _runsc(self.runsc("pause", self.id))

    async def _thaw(self) -> None:
        with contextlib.suppress(RuntimeError):  # it may be gone already (killed)
            await _runsc(self.runsc("resume", self.id))

    def _limit_hit(self) -> EndReason | None:
        group = self._cgroup
        if group is None:
            return None
        if group.oom_kills() > 0:
            return "oom_killed"
        if self._pids_hit or group.pids_max_hits() > 0:
            return "pids_exceeded"
        cpu = group.cpu_seconds()
        if self.limits.cpu_s is not None and cpu is not None and cpu >= self.limits.cpu_s:
            return "cpu_exceeded"
        return None

    def _classify(self, returncode: int) -> tuple[EndReason, int | None]:
        hit = self._limit_hit()
        if hit is not None:
            return hit, None
        if returncode == _SIGXCPU_EXIT:
            return "cpu_exceeded", None
        if returncode == _RUNSC_FAILED and "FATAL ERROR" in _tail(self.bundle / "runsc.log"):
            return "sandbox_crashed", None
        return "ok", returncode if returncode >= 0 else 128 - returncode

    def _usage(self) -> tuple[float | None, int | None]:
        if self._cgroup is None:
            return None, None
        return self._cgroup.cpu_seconds(), self._cgroup.peak_memory()

    async def _release(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        if self._cgroup is not None and not await self._cgroup.remove():
            log.warning("sandbox %s: cgroup %s not removed", self.id, self._cgroup.name)
        await asyncio.to_thread(shutil.rmtree, self.bundle, True)

    def _write_bundle(self, launcher_program: str) -> None:
        policy, limits = self.policy, self.limits
        if not policy.scratch.is_dir():
            raise ValueError(f"scratch directory {policy.scratch} does not exist")
        for path in policy.read_paths:
            if not os.path.isabs(path) or not os.path.exists(path):
                raise ValueError(f"read path {path!r} must be an existing absolute path")
        rootfs = self.bundle / "rootfs"
        rootfs.mkdir(parents=True)
        (self.bundle / "owner").write_text(self._owner)  # first, so reap() can always judge it
        (self.bundle / "state").mkdir()

        def point(dest: str, *, directory: bool = True) -> None:
            # Mount points must exist in the (read-only) root.
            path = rootfs / dest.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            if directory:
                path.mkdir(exist_ok=True)
            elif not path.exists():
                path.write_text("")

        def bind(src: str | Path, dest: str, mode: str = "ro") -> dict[str, Any]:
            point(dest, directory=os.path.isdir(src))
            opts = ["rbind", mode, "nosuid", "nodev"]
            return {"destination": dest, "type": "bind", "source": str(src), "options": opts}

        def tmpfs(dest: str, *opts: str) -> dict[str, Any]:
            point(dest)
            return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": list(opts)}

        point("/proc")
        point("/sys")
        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
            tmpfs("/dev"),
            tmpfs("/tmp", "nosuid", "nodev", "mode=1777"),
        ]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):  # merged /usr: /bin -> usr/bin, recreated in the root
                (rootfs / path[1:]).symlink_to(os.readlink(path))
            elif os.path.isdir(path):
                mounts.append(bind(path, path))
        for path in etc_entries():
            real = os.path.realpath(path)
            if os.path.exists(real):
                mounts.append(bind(real, path))
        mounts += [tmpfs(p, "ro") for p in HIDDEN_DIRS if os.path.isdir(p)]
        mounts += [bind(os.path.realpath(p), p) for p in policy.read_paths]
        mounts.append(bind(policy.scratch.resolve(), "/scratch", "rw"))
        file_size = min(MAX_FILE_BYTES, largest_file(limits))
        rlimits = [_rlimit("NOFILE", 1024), _rlimit("FSIZE", file_size)]
        if limits.cpu_s is not None:
            rlimits.append(_rlimit("CPU", math.ceil(limits.cpu_s), math.ceil(limits.cpu_s) + 1))
        if limits.pids is not None:
            rlimits.append(_rlimit("NPROC", limits.pids))  # the launcher becomes the command
        config = {
            "ociVersion": "1.0.0",
            "process": {
                "args": ["/bin/sh", "-c", launcher_program],
                "env": [],
                "cwd": "/scratch",
                "user": {"uid": self._user.uid, "gid": self._user.gid},
                "rlimits": rlimits,
                "capabilities": _NO_CAPS,
                "noNewPrivileges": True,
            },
            "root": {"path": "rootfs", "readonly": True},
            "hostname": "sandbox",
            "mounts": mounts,
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            },
        }
        (self.bundle / "config.json").write_text(json.dumps(config, indent=1))


class GvisorBackend:
    """Sandboxes as gVisor (``runsc``) containers. ``workdir`` holds bundles and artifacts."""

    name = "gvisor"
    strength = 3
    supports_network_allowlist = False

    def __init__(
        self, workdir: Path, *, runsc: str = "runsc", user: SandboxUser | None = None
    ) -> None:
        self.workdir = Path(workdir)
        self.user = user or sandbox_user()
        self._runsc, self._owner = runsc, new_owner_id()
        self._layout: CgroupLayout | None = None

    def _ready(self) -> CgroupLayout:
        if shutil.which(self._runsc) is None:
            raise SandboxUnavailable("runsc not found: install Debian's runsc package")
        if os.geteuid() != 0:
            raise SandboxUnavailable("runsc needs root here (rootless is not used)")
        if self._layout is None:
            try:
                self._layout = detect_layout()
            except (CgroupUnavailable, OSError) as exc:
                raise SandboxUnavailable(f"no usable cgroups for limits: {exc}") from None
        return self._layout

    async def probe(self) -> ProbeResult:
        """Run python3 in a 64 MiB sandbox and check who it runs as; on failure, say why."""
        from agentrt.tools.sandbox.pool import scratch_dir

        try:
            self._ready()
            async with scratch_dir(self.workdir, self.user) as volume:
                limits = SandboxLimits(wall_s=30, cpu_s=10, memory_mb=64, pids=16)
                box = await self.create(SandboxPolicy(volume.path), limits)
                try:
                    res = await box.exec(["python3", "-c", "import os; print(os.getuid())"])
                finally:
                    await box.terminate()
        except (SandboxUnavailable, OSError) as exc:
            return ProbeResult(self.name, False, f"runsc self-test failed: {exc}")
        ok = (res.reason, res.exit_code, res.stdout) == ("ok", 0, f"{self.user.uid}\n")
        why = f"{res.reason}, exit {res.exit_code}: {(res.stdout + res.stderr)[-300:]!r}"
        detail = (
            f"works: gVisor's kernel, runs as uid {self.user.uid} (not root), disk quota "
            f"{'enforced by a tmpfs per sandbox' if volume.enforced else 'measured'}, "
            "no network"
        )
        return ProbeResult(self.name, ok, detail if ok else why)

    async def create(
        self,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        on_event: Callable[[SandboxEvent], None] | None = None,
        prestart: Prestart | None = None,
    ) -> GvisorSandbox:
        """Write a bundle and boot it; with ``prestart``, its program is started too.

        Raises:
            SandboxUnavailable: a network allow-list, no runsc, or runsc failed to boot it.
        """
        if policy.network != "none":
            raise SandboxUnavailable(
                "gvisor enforces only `network: none` (its netstack has no place for the egress "
                "proxy); bubblewrap enforces a host:port allow-list"
            )
        layout = self._ready()
        await asyncio.to_thread(self.user.give, policy.scratch)
        box = GvisorSandbox(
            policy, limits, workdir=self.workdir, on_event=on_event, prestart=prestart,
            runsc=self._runsc, user=self.user, layout=layout, owner=self._owner,
        )  # fmt: skip
        await box.start()
        return box

    async def reap(self) -> int:
        """Remove the cgroups, bundles and scratch volumes of sandboxes whose runtime died."""
        from agentrt.tools.sandbox.pool import reap_scratch

        root = self.workdir / "bundles"
        count = 0
        for bundle in await asyncio.to_thread(lambda: sorted(root.glob("agentrt-*"))):
            try:
                owner = await asyncio.to_thread((bundle / "owner").read_text)
            except OSError:  # it died before writing it: judge by the pid in the name
                owner = f"{socket.gethostname()}:{bundle.name.split('-')[1]}:"
            if not owner_is_dead(owner):
                continue
            await asyncio.to_thread(shutil.rmtree, bundle, True)
            count += 1
        layout = None
        with contextlib.suppress(SandboxUnavailable):
            layout = self._ready()
        if layout is not None:  # the cgroups of those bundles (and of any not written yet)
            await reap_cgroups(layout)
        return count + await reap_scratch(self.workdir)


async def _runsc(argv: list[str]) -> None:
    """Run a short runsc command to its end; RuntimeError with what it said if it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            said, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"`{shlex.join(argv)}` failed: {said.decode(errors='replace')}")


def _tail(path: Path) -> str:
    try:
        return path.read_bytes()[-4000:].decode(errors="replace")
    except OSError:
        return ""


def _rlimit(kind: str, soft: int, hard: int | None = None) -> dict[str, Any]:
    return {"type": f"RLIMIT_{kind}", "soft": soft, "hard": soft if hard is None else hard}
