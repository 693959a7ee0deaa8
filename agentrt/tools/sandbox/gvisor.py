"""The gVisor backend: each sandbox is a ``runsc`` container (strength 3).

``create()`` writes an OCI bundle and boots it (``runsc run --detach``, ~200 ms)
with a launcher as its init that has already forked the command's process, so
``exec()`` is one line on a pipe and one exec inside gVisor (~25 ms to run
``true``, against ~50 ms for a ``runsc exec`` and ~160 ms for a fresh ``runsc
run``, which would also delete the cgroup and its OOM counter before we read
them). With a :class:`Prestart` the program itself (the code tool's Python) is
already running, waiting for its ``go``: the model's code starts ~5 ms after
``exec()``. A restored sandbox has no launcher pipe and uses ``runsc exec``.
``runsc do`` is never used: it cannot enforce memory or process limits.

The command sees an empty read-only root with read-only binds of the host's
system directories and the few /etc entries of :mod:`hostfs`, a private tmpfs
/tmp, the ``read_paths`` read-only and the scratch directory at ``/scratch`` (its cwd),
the only writable place; nothing of /root, /home, the host's /tmp or the
runtime's data dir. It runs as uid 0 of the sandbox without capabilities,
with exactly the policy's environment, and its stdio are files bind-mounted
from the bundle, so they survive a checkpoint. Network: ``none`` only
(``--network=none``); allow-lists are for bubblewrap, whose network namespace
the runtime can serve an egress proxy into.

Limits, as this runsc (Debian's 0.0~20221219, ptrace platform) enforces them:
memory is the host cgroup of the whole sandbox, gVisor's kernel included (the
host OOM killer kills the sandbox: ``oom_kill`` counter). Processes are
RLIMIT_NPROC inside gVisor (forks fail with EAGAIN) plus a once-a-second
``runsc events`` sample that ends the sandbox at the limit; the host pids
cgroup is only a safety net, as gVisor's own threads count there. CPU time is
RLIMIT_CPU (SIGXCPU), which this runsc arms only on setrlimit, so a ``/bin/sh``
shim sets it again before exec, and the sampled CPU time of the whole sandbox
catches children. Wall time is our clock, paused time excluded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import shlex
import shutil
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from agentrt._text import count
from agentrt.engine.owner import new_owner_id, owner_is_dead
from agentrt.tools.sandbox.base import (
    EndReason,
    ExecResult,
    Prestart,
    ProbeResult,
    SandboxEvent,
    SandboxLimits,
    SandboxPolicy,
    SandboxState,
    SandboxUnavailable,
)
from agentrt.tools.sandbox.cgroups import CgroupUnavailable, SandboxCgroup, detect_layout
from agentrt.tools.sandbox.hostfs import HIDDEN_DIRS, SYSTEM_DIRS, etc_entries

__all__ = ["GvisorBackend", "GvisorSandbox"]

# The init is a launcher that has already forked the command's process: that
# process waits for one line on the init's stdin (a pipe from the runtime), then
# sources /.agentrt/cmd.sh, which execs the command. With a Prestart it has
# even exec'd the program already, which waits on fd 3 itself. So running a command costs
# a line and one exec inside gVisor, not a `runsc exec` (~50 ms). A background
# job's stdin is /dev/null, hence fd 3. The init reports the command's pid when
# ready and its status when done (then also in /.agentrt/status, which a
# checkpoint keeps), then stays, reaping orphans (dash's `wait` reaps any child).
_LAUNCHER = """exec 3<&0
( . /.agentrt/start.sh ) &
p=$!
echo "ready $p"
wait $p
s=$?
echo "exit $s"
echo "$s" >/.agentrt/status
exec 3<&- </dev/null >/dev/null
while :; do sleep 3600 & wait; done
"""
_INIT_PROCS = 1  # the launcher; it runs as the command's uid, so NPROC is pids + 1
_BOOT_TIMEOUT_S = 60.0
_NO_CAPS: dict[str, list[str]] = {"bounding": [], "effective": [], "permitted": []}
_IO = ("stdin", "stdout", "stderr", "cmd.sh", "start.sh", "status")
_WAIT_FOR_GO = "read -r go <&3 && exec 3<&- && . /.agentrt/cmd.sh\n"
_MAX_FILE = 1 << 30  # RLIMIT_FSIZE: an output flood cannot fill the disk either
_SIGXCPU_EXIT = 128 + signal.SIGXCPU
_META = "agentrt-sandbox.json"

OnEvent = Callable[[SandboxEvent], None]


def _open(path: Path, mode: str) -> IO[bytes]:
    return open(path, mode)  # the caller closes it


async def _run(argv: Sequence[str], *, log: Path | None = None, limit_s: float | None = 60) -> str:
    """Run a runsc command to its end and return its stdout; RuntimeError if it fails.

    ``log`` takes the output instead of a pipe: ``runsc create`` and ``restore``
    hand their stdio on to the sandbox, which would hold a pipe open for ever.
    """
    pipe = asyncio.subprocess.PIPE
    sink = pipe if log is None else await asyncio.to_thread(_open, log, "ab")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink
        )
        try:
            async with asyncio.timeout(limit_s):
                out, err = await proc.communicate()
        finally:
            if proc.returncode is None:  # timed out or cancelled: leave no runsc behind
                proc.kill()
                await proc.wait()
    finally:
        if not isinstance(sink, int):
            sink.close()
    if proc.returncode != 0:
        said = ((err or b"") + (out or b"")).decode(errors="replace").strip()
        if log is not None:
            said = await asyncio.to_thread(_tail, log)
        raise RuntimeError(f"`{' '.join(argv)}` failed ({proc.returncode}): {said}")
    return (out or b"").decode()


def _tail(path: Path) -> str:
    try:
        return path.read_bytes()[-1000:].decode(errors="replace").strip()
    except OSError:
        return ""


def _cgroup(name: str) -> SandboxCgroup | None:
    """The host cgroup runsc makes for ``cgroupsPath: name``: a child of our own cgroup."""
    try:
        layout = detect_layout()
    except (CgroupUnavailable, OSError):
        return None
    return SandboxCgroup(layout, name, {c: base / name for c, base in layout.bases.items()})


def _output(path: Path, cap: int, artifact: Path) -> tuple[str, bool]:
    """The first ``cap`` bytes of an output file; the whole file becomes ``artifact`` if longer."""
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as file:
        head = file.read(cap).decode(errors="replace")
        if os.fstat(file.fileno()).st_size <= cap:
            return head, False
        artifact.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, artifact)
        return (
            f"{head}\n[output truncated at {count(cap, 'byte')}; full output: artifact "
            f"{artifact.name}]",
            True,
        )
    return "", False


class GvisorSandbox:
    """One runsc container for one command; see the module docstring."""

    backend = "gvisor"

    def __init__(
        self,
        owner: GvisorBackend,
        cid: str,
        bundle: Path,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        pid: int | None,
        *,
        used: bool = False,
        prestart: Prestart | None = None,
    ) -> None:
        self.id, self.bundle, self.policy, self.limits = cid, bundle, policy, limits
        self.cgroup = _cgroup(bundle.name)
        self.on_event: OnEvent | None = None
        self._owner = owner
        self._state: SandboxState = "created"
        self._pid = pid  # the command's pid inside the sandbox (forked before it runs)
        self._used = used  # restored mid-command: attach() follows it
        self._launcher: asyncio.subprocess.Process | None = None  # `runsc run`, ours
        self._prestart = prestart
        self._reason: EndReason | None = None
        self._kill: EndReason | None = None  # why we are ending the command
        self._busy = self._snapshotting = False
        self._gen = 0  # bumped by each restore in place: the old runsc exec is stale
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._wake, self._done = asyncio.Event(), asyncio.Event()

    @property
    def state(self) -> SandboxState:
        """The current state."""
        return self._state

    def _emit(self, state: SandboxState, reason: EndReason | None = None, detail: str = "") -> None:
        self._state = state
        if self.on_event is not None:
            self.on_event(SandboxEvent(self.id, self.backend, state, reason, detail))

    def runsc(self, *args: str) -> list[str]:
        """A runsc command line for this sandbox."""
        return self._owner.runsc_argv(self.bundle / "state", *args)

    def _alive(self) -> bool:
        try:
            pid = int((self.bundle / "sandbox.pid").read_text())
        except (OSError, ValueError):
            return False
        return not owner_is_dead(f"{socket.gethostname()}:{pid}:sandbox")

    def _paused_for(self) -> float:
        now = time.monotonic()
        return self._paused_total + (now - self._paused_at if self._paused_at else 0.0)

    async def exec(self, argv: Sequence[str], *, stdin: bytes | None = None) -> ExecResult:
        """Run ``argv`` (found in the policy's PATH, or sh's default) to its end or its limit.

        Raises:
            RuntimeError: the sandbox was already used: it runs one command.
        """
        if self._used or self._state != "created":
            raise RuntimeError(f"sandbox {self.id} was already used; create a new one")
        if not argv:
            raise ValueError("argv is empty")
        self._used = self._busy = True
        launcher = self._launcher
        if self._prestart is not None and launcher is not None:
            if tuple(argv) == self._prestart.argv and not stdin:
                await self._send(b"go\n")
                return await self._follow(self._exit_status(launcher), launcher)
            await self._send(b"no\n")  # the pre-started program exits unused
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._exit_status(launcher)
            launcher = None
        await asyncio.to_thread(self._prepare, list(argv), stdin or b"")
        if launcher is None:
            return await self._exec_afresh()
        await self._send(b"go\n")
        return await self._follow(self._exit_status(launcher), launcher)

    async def _send(self, line: bytes) -> None:
        launcher = self._launcher
        if launcher is None or launcher.stdin is None:
            return
        with contextlib.suppress(ConnectionError):  # a dead launcher: classified later
            launcher.stdin.write(line)
            await launcher.stdin.drain()

    async def _exec_afresh(self) -> ExecResult:
        """Run the prepared command with ``runsc exec`` (a restored sandbox has no launcher)."""
        process = {
            "args": ["/bin/sh", "-c", ". /.agentrt/cmd.sh"],
            "env": [f"{k}={v}" for k, v in self.policy.env.items()],
            "cwd": "/scratch",
            "user": {"uid": 0, "gid": 0},
            "capabilities": _NO_CAPS,
            "noNewPrivileges": True,
        }
        spec, pid_file = self.bundle / "exec.json", self.bundle / "exec.pid"
        await asyncio.to_thread(spec.write_text, json.dumps(process))
        log = await asyncio.to_thread(_open, self.bundle / "runsc.log", "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.runsc(
                    "exec", "--internal-pid-file", str(pid_file), "--process", str(spec), self.id
                ),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        self._pid = None  # the new command's pid is in exec.pid
        return await self._follow(proc.wait(), proc)

    async def _exit_status(self, launcher: asyncio.subprocess.Process) -> int:
        """The command's status, as the launcher reports it (128 if it went away)."""
        assert launcher.stdout is not None
        while line := await launcher.stdout.readline():
            word, _, value = line.decode(errors="replace").partition(" ")
            if word == "exit" and value.strip().isdigit():
                return int(value)
        return 128

    async def attach(self) -> ExecResult:
        """Follow the command a restored snapshot was running, to its end or its limit.

        Raises:
            RuntimeError: this sandbox was not restored in the middle of a command.
        """
        if not self._used or self._pid is None or self._busy or self._done.is_set():
            raise RuntimeError(f"sandbox {self.id} has no restored command to follow")
        self._busy = True
        return await self._follow(self._wait_pid(), None)

    def _prepare(self, argv: list[str], stdin: bytes) -> None:
        (self.bundle / "io" / "stdin").write_bytes(stdin)
        (self.bundle / "io" / "cmd.sh").write_text(
            command_script(argv, self.policy.env, self.limits)
        )

    async def _wait_pid(self) -> int:
        """The command's exit status after a restore, which leaves our launcher pipe behind.

        ``runsc wait --pid`` waits for the command to exit; if the launcher reaped
        it first, the launcher's status file has the answer.
        """
        try:
            if self._pid is None:
                self._pid = int(await asyncio.to_thread((self.bundle / "exec.pid").read_text))
            out = await _run(self.runsc("wait", "--pid", str(self._pid), self.id), limit_s=None)
            return int(json.loads(out)["exitStatus"])
        except (RuntimeError, OSError, ValueError, KeyError):
            for _ in range(50):  # the launcher writes it just after reaping the command
                status = await asyncio.to_thread(_tail, self.bundle / "io" / "status")
                if status.isdigit():
                    return int(status)
                if not self._alive():
                    break
                await asyncio.sleep(0.02)
            return 128  # the sandbox went away

    async def _follow(
        self, wait: Awaitable[int], proc: asyncio.subprocess.Process | None
    ) -> ExecResult:
        cg = self.cgroup
        oom0, pids0 = (cg.oom_kills(), cg.pids_max_hits()) if cg else (0, 0)
        cpu0 = cg.cpu_seconds() if cg else None
        start, paused0, gen = time.monotonic(), self._paused_for(), self._gen
        if self._state != "running":
            self._emit("running")
        waiter: asyncio.Future[int] = asyncio.ensure_future(wait)
        monitor = asyncio.create_task(self._monitor())
        try:
            while self._kill is None:
                if waiter.done() and not self._snapshotting:
                    if gen == self._gen:
                        break
                    gen, waiter = self._gen, asyncio.ensure_future(self._wait_pid())
                    continue
                active = time.monotonic() - start - (self._paused_for() - paused0)
                if self._paused_at is None and active >= self.limits.wall_s:
                    await self._end("timeout")
                    break
                self._wake.clear()
                wake = asyncio.create_task(self._wake.wait())
                left = None if self._paused_at is not None else self.limits.wall_s - active
                waits: set[asyncio.Future[Any]] = {wake} if waiter.done() else {wake, waiter}
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
            active = time.monotonic() - start - (self._paused_for() - paused0)
            try:
                async with asyncio.timeout(15):  # after a kill runsc exits at once
                    rc = await asyncio.shield(waiter)
            except TimeoutError:  # wedged: take our runsc client down
                if proc is not None and proc.returncode is None:
                    proc.kill()
                waiter.cancel()
                rc = 128
        finally:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)
            self._busy = False  # if cancelled, terminate() still kills the command
        cpu1 = cg.cpu_seconds() if cg else None
        cpu = None if cpu0 is None or cpu1 is None else max(cpu1 - cpu0, 0.0)
        self._reason = reason = self._kill or self._classify(rc, oom0, pids0, cpu)
        texts, cut = {}, []
        for stream in ("stdout", "stderr"):
            artifact = self._owner.workdir / "artifacts" / f"{self.bundle.name}.{stream}.txt"
            cap, io = self.limits.output_bytes, self.bundle / "io" / stream
            texts[stream], truncated = await asyncio.to_thread(_output, io, cap, artifact)
            cut += [artifact] if truncated else []
        if reason == "sandbox_crashed":  # say what runsc said, to the caller and the model
            said = await asyncio.to_thread(_tail, self.bundle / "runsc.log")
            texts["stderr"] += f"\n[sandbox crashed; runsc said: {said}]"
        self._done.set()
        self._emit("exited", reason, f"exit status {rc}")
        return ExecResult(
            backend=self.backend,
            sandbox_id=self.id,
            reason=reason,
            exit_code=rc if reason == "ok" else None,
            stdout=texts["stdout"],
            stderr=texts["stderr"],
            truncated=bool(cut),
            artifact=cut[0] if cut else None,
            duration_s=active,
            cpu_s=cpu,
            max_memory_bytes=cg.peak_memory() if cg else None,
        )

    def _classify(self, rc: int, oom0: int, pids0: int, cpu: float | None) -> EndReason:
        cg = self.cgroup
        if cg is not None and cg.oom_kills() > oom0:
            return "oom_killed"
        if cg is not None and cg.pids_max_hits() > pids0:  # the host safety net was hit
            return "pids_exceeded"
        if not self._alive():
            return "sandbox_crashed"
        limit = self.limits.cpu_s
        if rc == _SIGXCPU_EXIT or (rc == 137 and limit is not None and (cpu or 0) >= limit):
            return "cpu_exceeded"  # soft limit: SIGXCPU; hard limit (soft + 1 s): SIGKILL
        return "ok"

    async def _monitor(self) -> None:
        """End the sandbox when a sample shows it at its process or CPU-time limit."""
        pids, cpu_s = self.limits.pids, self.limits.cpu_s
        if pids is None and cpu_s is None:
            return
        await asyncio.sleep(0.25)  # most commands are done by then: spare them a runsc process
        proc = await asyncio.create_subprocess_exec(
            *self.runsc("events", "--interval=1", self.id),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        base: float | None = None
        try:
            async for line in proc.stdout:
                try:
                    data = json.loads(line)["data"]
                    procs = int(data["pids"]["current"]) - _INIT_PROCS
                    used = int(data["cpu"]["usage"]["total"]) / 1e9
                except (ValueError, KeyError, TypeError):
                    continue
                base = used if base is None else base
                if pids is not None and procs >= pids:
                    await self._end("pids_exceeded")
                elif cpu_s is not None and used - base >= cpu_s + 1:  # the rlimit had its turn
                    await self._end("cpu_exceeded")
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

    async def _end(self, reason: EndReason) -> None:
        """Kill every process of the sandbox (which then exits) for ``reason``."""
        if self._kill is None:
            self._kill = reason
            self._wake.set()
            with contextlib.suppress(RuntimeError):
                await _run(self.runsc("kill", "--all", self.id, "KILL"))

    async def pause(self) -> None:
        """Freeze the running command (``runsc pause``); its wall clock stops too."""
        if self._state == "running" and not self._snapshotting:
            await _run(self.runsc("pause", self.id))
            self._paused_at = time.monotonic()
            self._wake.set()
            self._emit("paused")

    async def resume(self) -> None:
        """Continue after :meth:`pause` (``runsc resume``)."""
        if self._state == "paused" and self._paused_at is not None:
            await _run(self.runsc("resume", self.id))
            self._paused_total += time.monotonic() - self._paused_at
            self._paused_at = None
            self._wake.set()
            self._emit("running")

    async def snapshot(self, dest: Path) -> Path:
        """Checkpoint the sandbox into ``dest`` (``runsc checkpoint``) and let it go on.

        Checkpointing stops a gVisor sandbox and this runsc's ``--leave-running``
        blocks until the container exits, so the sandbox is restored in place; a
        running command goes on (followed with ``runsc wait``, its output files
        intact). :meth:`GvisorBackend.restore` starts a copy of ``dest`` once
        this sandbox is gone. After the command only the scratch is copied.

        Raises:
            RuntimeError: runsc failed to checkpoint or to restore the sandbox.
        """
        if self._state in ("exited", "terminated"):
            target = dest / self.id if await asyncio.to_thread(dest.exists) else dest
            await asyncio.to_thread(shutil.copytree, self.policy.scratch, target, symlinks=True)
            return target
        paused = self._paused_at is not None
        self._snapshotting = True
        if not paused:
            self._paused_at = time.monotonic()  # checkpointing is not running time
        try:
            await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
            if paused:  # this runsc cannot delete a container checkpointed while paused
                await _run(self.runsc("resume", self.id))
            await _run(self.runsc("checkpoint", "--image-path", str(dest), self.id))
            await asyncio.to_thread(self._save, dest)
            await _run(self.runsc("delete", self.id))
            await self._owner.boot(self, restore=dest)
            self._gen += 1
            if paused:
                await _run(self.runsc("pause", self.id))
        finally:
            self._snapshotting = False
            if not paused and self._paused_at is not None:
                self._paused_total += time.monotonic() - self._paused_at
                self._paused_at = None
            self._wake.set()
        return dest

    def _save(self, dest: Path) -> None:
        meta = {
            "id": self.id,
            "pid": self._pid,
            "running": self._busy,
            "policy": {
                "scratch": str(self.policy.scratch),
                "env": dict(self.policy.env),
                "read_paths": list(self.policy.read_paths),
            },
            "limits": asdict(self.limits),
        }
        (dest / _META).write_text(json.dumps(meta))
        shutil.copytree(self.bundle / "io", dest / "io", dirs_exist_ok=True)

    async def terminate(self) -> None:
        """Kill everything (``runsc delete --force``) and remove the bundle. Idempotent."""
        if self._state == "terminated":
            return
        if self._busy:
            self._kill = self._kill or "terminated"
            self._wake.set()
        if self._paused_at is not None:  # this runsc panics force-deleting a paused container
            with contextlib.suppress(RuntimeError):
                await _run(self.runsc("resume", self.id))
        with contextlib.suppress(RuntimeError):
            await _run(self.runsc("delete", "--force", self.id))
        if self._launcher is not None:
            await _reap(self._launcher)
        if self._busy:
            await self._done.wait()  # the command's own end is reported first
        if self.cgroup is not None:  # runsc delete removed it, unless runsc is wedged
            await self.cgroup.remove()
        await asyncio.to_thread(shutil.rmtree, self.bundle, True)
        self._emit("terminated", self._reason or "terminated")


class GvisorBackend:
    """Sandboxes as gVisor (``runsc``) containers. ``workdir`` holds bundles and artifacts."""

    name = "gvisor"
    strength = 3
    supports_network_allowlist = False

    def __init__(self, workdir: Path, *, runsc: str = "runsc") -> None:
        self.workdir = Path(workdir)
        self._runsc, self._owner = runsc, new_owner_id()

    def runsc_argv(self, state: Path, *args: str) -> list[str]:
        """A runsc command line for the containers kept in ``state``."""
        return [self._runsc, "--root", str(state), "--network=none", *args]

    async def probe(self) -> ProbeResult:
        """Run ``python3 -c 'print(1)'`` in a 64 MiB sandbox; on failure, say why."""
        if shutil.which(self._runsc) is None:
            return ProbeResult(self.name, False, "runsc not found: install Debian's runsc package")
        if os.geteuid() != 0:
            return ProbeResult(self.name, False, "runsc needs root here (rootless is not used)")
        scratch = self.workdir / f"probe-{secrets.token_hex(4)}"
        await asyncio.to_thread(scratch.mkdir, parents=True, exist_ok=True)
        box: GvisorSandbox | None = None
        try:
            limits = SandboxLimits(wall_s=30, cpu_s=10, memory_mb=64, pids=16)
            box = await self.create(SandboxPolicy(scratch=scratch), limits)
            res = await box.exec(["python3", "-c", "print(1)"])
            ok = (res.reason, res.exit_code, res.stdout) == ("ok", 0, "1\n")
            why = f"{res.reason}, exit {res.exit_code}: {(res.stdout + res.stderr)[-300:]!r}"
            return ProbeResult(self.name, ok, "runs and limits commands" if ok else why)
        except (SandboxUnavailable, RuntimeError, OSError) as exc:
            return ProbeResult(self.name, False, f"runsc self-test failed: {exc}")
        finally:
            if box is not None:
                await box.terminate()
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    async def create(
        self,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        on_event: OnEvent | None = None,
        prestart: Prestart | None = None,
    ) -> GvisorSandbox:
        """Write a bundle and boot it; with ``prestart``, its program is started too.

        Raises:
            SandboxUnavailable: a network allow-list, no runsc, or runsc failed to boot it.
            ValueError: the scratch directory or a read path does not exist.
        """
        if policy.network != "none":
            raise SandboxUnavailable(
                "gvisor enforces only `network: none` (its netstack has no place for the egress "
                "proxy); bubblewrap enforces a host:port allow-list"
            )
        if shutil.which(self._runsc) is None:
            raise SandboxUnavailable("runsc not found: install Debian's runsc package")
        return await self._start(policy, limits, on_event, None, {}, prestart)

    async def restore(self, image: Path, *, on_event: OnEvent | None = None) -> GvisorSandbox:
        """A sandbox restored from :meth:`GvisorSandbox.snapshot` ``image``.

        If the snapshot was taken during a command the sandbox is ``running`` and
        :meth:`GvisorSandbox.attach` follows that command. The snapshotted sandbox
        must be gone: gVisor names the sandbox after the container id the image
        keeps (else runsc says "address already in use").

        Raises:
            SandboxUnavailable: runsc could not restore the image.
        """
        meta = json.loads(await asyncio.to_thread((image / _META).read_text))
        pol = meta["policy"]
        policy = SandboxPolicy(
            Path(pol["scratch"]), env=pol["env"], read_paths=tuple(pol["read_paths"])
        )
        return await self._start(policy, SandboxLimits(**meta["limits"]), on_event, image, meta)

    async def _start(
        self,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        on_event: OnEvent | None,
        image: Path | None,
        meta: dict[str, Any],
        prestart: Prestart | None = None,
    ) -> GvisorSandbox:
        name = f"agentrt-{os.getpid()}-{secrets.token_hex(5)}"
        bundle = self.workdir / "bundles" / name
        await asyncio.to_thread(self._write_bundle, bundle, policy, limits, image, prestart)
        box = GvisorSandbox(
            self, meta.get("id", name), bundle, policy, limits, meta.get("pid"),
            used=bool(meta.get("running")), prestart=prestart,
        )  # fmt: skip
        try:
            await self.boot(box, restore=image)
        except RuntimeError as exc:
            await box.terminate()
            raise SandboxUnavailable(f"runsc could not start the sandbox: {exc}") from exc
        box.on_event = on_event
        box._emit("running" if box._used else "created", detail=f"from {image}" if image else "")
        return box

    async def boot(self, box: GvisorSandbox, *, restore: Path | None = None) -> None:
        """Start a bundle's launcher (``runsc run``), or ``runsc restore`` it from an image.

        Raises:
            RuntimeError: runsc failed, or the launcher did not say it was ready.
        """
        log, pid_file = box.bundle / "runsc.log", str(box.bundle / "sandbox.pid")
        common = ["--bundle", str(box.bundle), "--pid-file", pid_file]
        box._launcher = None
        if restore is not None:  # the launcher's pipes do not survive: exec uses runsc exec
            image = ["--image-path", str(restore)]
            await _run(box.runsc("restore", "--detach", *image, *common, box.id), log=log)
            return
        # Detached, so that runsc never deletes the container (and its OOM counter)
        # on its own; the sandbox keeps our pipes as the launcher's stdin and stdout.
        sink = await asyncio.to_thread(_open, log, "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *box.runsc("run", "--detach", *common, box.id),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=sink,
            )
        finally:
            sink.close()
        box._launcher = proc
        line = await _ready_line(proc)
        if len(line) != 2 or line[0] != "ready" or not line[1].isdigit():
            await _reap(proc)
            said = await asyncio.to_thread(_tail, log)
            raise RuntimeError(f"the launcher did not start ({proc.returncode}): {said}")
        box._pid = int(line[1])

    def _write_bundle(
        self,
        bundle: Path,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        image: Path | None,
        prestart: Prestart | None = None,
    ) -> None:
        if not policy.scratch.is_dir():
            raise ValueError(f"scratch directory {policy.scratch} does not exist")
        for path in policy.read_paths:
            if not os.path.isabs(path) or not os.path.exists(path):
                raise ValueError(f"read path {path!r} must be an existing absolute path")
        (bundle / "rootfs").mkdir(parents=True)
        (bundle / "owner").write_text(self._owner)  # first, so reap() can always judge it
        (bundle / "state").mkdir()
        if image is not None:  # the files the restored command has open
            shutil.copytree(image / "io", bundle / "io")
        else:
            (bundle / "io").mkdir()
            for name in _IO:
                (bundle / "io" / name).write_bytes(b"")
            start = _WAIT_FOR_GO
            if prestart is not None:  # its own fd 3 is the launcher's pipe
                start = command_script(prestart.ready_argv, policy.env, limits)
            (bundle / "io" / "start.sh").write_text(start)

        def bind(src: str | Path, dest: str, mode: str = "ro") -> dict[str, Any]:
            opts = ["rbind", mode, "nosuid", "nodev"]
            return {"destination": dest, "type": "bind", "source": str(src), "options": opts}

        def tmpfs(dest: str, *opts: str) -> dict[str, Any]:
            return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": list(opts)}

        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
            tmpfs("/dev"),
            tmpfs("/tmp", "nosuid", "nodev"),
        ]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):  # merged /usr: /bin -> usr/bin, recreated in the root
                (bundle / "rootfs" / path[1:]).symlink_to(os.readlink(path))
            elif os.path.isdir(path):
                mounts.append(bind(path, path))
        (bundle / "rootfs" / "etc").mkdir()
        for path in etc_entries():
            real = os.path.realpath(path)
            if not os.path.exists(real):
                continue
            # The mount point must exist in the (read-only) root, as a file or a directory.
            point = bundle / "rootfs" / path[1:]
            point.mkdir() if os.path.isdir(real) else point.write_text("")
            mounts.append(bind(real, path))
        mounts += [tmpfs(p, "ro") for p in HIDDEN_DIRS if os.path.isdir(p)]
        mounts += [bind(os.path.realpath(p), p) for p in policy.read_paths]
        mounts.append(bind(policy.scratch.resolve(), "/scratch", "rw"))
        mounts += [bind(bundle / "io" / n, f"/.agentrt/{n}", "rw") for n in _IO]
        rlimits = [_rlimit("NOFILE", 1024), _rlimit("FSIZE", _MAX_FILE)]
        resources: dict[str, Any] = {"cpu": {"quota": 100000, "period": 100000}}  # one CPU
        if limits.cpu_s is not None:
            rlimits.append(_rlimit("CPU", math.ceil(limits.cpu_s), math.ceil(limits.cpu_s) + 1))
        if limits.pids is not None:
            rlimits.append(_rlimit("NPROC", limits.pids + _INIT_PROCS))
            resources["pids"] = {"limit": 256 + 16 * limits.pids}  # gVisor's threads count too
        if limits.memory_mb is not None:
            resources["memory"] = {"limit": limits.memory_mb << 20}
        config = {
            "ociVersion": "1.0.0",
            "process": {
                "args": ["/bin/sh", "-c", _LAUNCHER],
                "env": [f"{k}={v}" for k, v in policy.env.items()],
                "cwd": "/scratch",
                "user": {"uid": 0, "gid": 0},
                "rlimits": rlimits,
                "capabilities": _NO_CAPS,
                "noNewPrivileges": True,
            },
            "root": {"path": "rootfs", "readonly": True},
            "hostname": "sandbox",
            "mounts": mounts,
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                "cgroupsPath": bundle.name,  # relative: a child of the runtime's own cgroup
                "resources": resources,
            },
        }
        (bundle / "config.json").write_text(json.dumps(config, indent=1))

    async def reap(self) -> int:
        """Remove the containers, cgroups and bundles of sandboxes whose runtime died."""
        root = self.workdir / "bundles"
        count = 0
        for bundle in await asyncio.to_thread(lambda: sorted(root.glob("agentrt-*"))):
            try:
                owner = await asyncio.to_thread((bundle / "owner").read_text)
            except OSError:  # it died before writing it: judge by the pid in the name
                owner = f"{socket.gethostname()}:{bundle.name.split('-')[1]}:"
            if not owner_is_dead(owner):
                continue
            state = bundle / "state"
            with contextlib.suppress(RuntimeError):
                for cid in (await _run(self.runsc_argv(state, "list", "--quiet"))).split():
                    for step in (["resume"], ["delete", "--force"]):  # deleting a paused one panics
                        with contextlib.suppress(RuntimeError):
                            await _run(self.runsc_argv(state, *step, cid))
            cgroup = _cgroup(bundle.name)
            if cgroup is not None:  # kills what runsc could not (a broken state file)
                await cgroup.remove()
            await asyncio.to_thread(shutil.rmtree, bundle, True)
            count += 1
        return count


def command_script(argv: Sequence[str], env: Mapping[str, str], limits: SandboxLimits) -> str:
    """The ``sh`` lines that exec ``argv`` with exactly ``env``, its limits and its stdio files."""
    # runsc adds HOME and dash exports PWD: drop them unless the policy sets them.
    script = "".join(f"unset {k}; " for k in ("HOME", "PWD") if k not in env)
    if limits.cpu_s is not None:  # this runsc arms RLIMIT_CPU only on setrlimit
        script += f"ulimit -S -t {math.ceil(limits.cpu_s)}; "
    script += 'exec "$@" </.agentrt/stdin >/.agentrt/stdout 2>/.agentrt/stderr\n'
    return f"set -- {shlex.join(argv)}\n{script}"


async def _ready_line(proc: asyncio.subprocess.Process) -> list[str]:
    """The launcher's first line, or [] if runsc failed or it took too long."""
    assert proc.stdout is not None
    ready = asyncio.ensure_future(proc.stdout.readline())
    started = asyncio.ensure_future(proc.wait())  # `run --detach` exits once started
    try:
        async with asyncio.timeout(_BOOT_TIMEOUT_S):
            await asyncio.wait({ready, started}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done() and proc.returncode != 0:
                return []  # runsc failed: the log says why
            return (await ready).decode(errors="replace").split()
    except TimeoutError:
        return []
    finally:
        ready.cancel()
        started.cancel()


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Wait for one of our runsc processes to end (it does once its sandbox is gone)."""
    if proc.returncode is None:
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _rlimit(kind: str, soft: int, hard: int | None = None) -> dict[str, Any]:
    return {"type": f"RLIMIT_{kind}", "soft": soft, "hard": soft if hard is None else hard}
