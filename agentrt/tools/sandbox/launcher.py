"""The machinery every backend here shares: a launcher started before its command.

Every backend starts its process *before* it knows the command: a small ``sh``
launcher prints one byte on stdout to say it is ready, then blocks reading its
command from stdin, up to an end line chosen per sandbox. The launcher's
``read`` takes one byte at a time, so whatever follows the end line on stdin
is left for the command as its own stdin. That makes a created sandbox "warm":
namespaces, cgroups and rlimits are all in place before the first byte of user
code runs, and :meth:`LauncherSandbox.exec` only sends a line. The command runs
as ``env -i -- NAME=value ... argv`` so its environment is exactly the policy's.

With a :class:`~agentrt.tools.sandbox.base.Prestart` the launcher starts the
program itself ahead (the code tool's Python), which waits for ``go`` on fd 3:
``exec`` then only sends that line. For backends whose program start is slow.

What a command did is only ever the runtime's own observation: its exit status
comes from the process the runtime started (or from bwrap's status pipe, which
the sandbox cannot reach), its output from pipes the runtime drains and caps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from agentrt._text import count
from agentrt.tools.sandbox.base import (
    EndReason,
    ExecResult,
    Prestart,
    SandboxEvent,
    SandboxLimits,
    SandboxPolicy,
    SandboxState,
    SandboxUnavailable,
)
from agentrt.tools.sandbox.files import copy_out

__all__ = [
    "PRLIMIT",
    "CappedOutput",
    "LauncherSandbox",
    "command_script",
    "launcher",
    "prestart_launcher",
    "with_rlimits",
]

log = logging.getLogger(__name__)

POLL_S = 0.02  # how often limits are checked: the overshoot of a CPU limit is ~this
PRLIMIT = "/usr/bin/prlimit"  # util-linux; under /usr, so it is there in every sandbox


def launcher(end: str) -> str:
    """The ``sh -c`` program that signals readiness, then reads and runs its command."""
    return (
        f'printf r; s=; while IFS= read -r l; do [ "$l" = {end} ] && break; '
        f's="$s$l\n"; done; eval "$s"'
    )


def prestart_launcher(prestart: Prestart, env: Mapping[str, str]) -> str:
    """The ``sh -c`` program that becomes the pre-started program at once.

    The program says it is ready itself, once loaded, and reads ``go`` on fd 3
    (the launcher's stdin) when it is asked to run.
    """
    return f"exec 3<&0; {_exec_line(prestart.ready_argv, env)}"


def _exec_line(argv: Sequence[str], env: Mapping[str, str]) -> str:
    if not argv or "=" in argv[0]:
        raise ValueError(f"invalid command {list(argv)!r}: argv[0] must be a program name")
    pairs = [f"{name}={value}" for name, value in env.items()]
    return f"exec env -i -- {shlex.join([*pairs, *argv])}"


def with_rlimits(rlimits: Mapping[str, tuple[int, int]], argv: Sequence[str]) -> list[str]:
    """``argv`` started by ``prlimit`` (util-linux) with ``rlimits`` (soft, hard) set on itself.

    The names are prlimit's (``cpu``, ``nproc``, ``fsize``, ``as``). A process
    may always lower its own limits, so this works where setting another
    process's would need a capability the runtime may not hold.
    """
    if not rlimits:
        return list(argv)
    flags = [f"--{name}={soft}:{hard}" for name, (soft, hard) in rlimits.items()]
    return [PRLIMIT, *flags, "--", *argv]


def command_script(argv: Sequence[str], env: Mapping[str, str], end: str) -> bytes:
    """What the launcher reads: run ``argv`` with exactly ``env``, then the end line."""
    return f"{_exec_line(argv, env)}\n{end}\n".encode()


class CappedOutput:
    """One output stream, read incrementally: the first ``cap`` bytes are kept.

    Once the stream passes ``cap``, everything (including the kept head) is
    written to ``artifact``, so the full output survives; the artifact itself
    stops growing at ``artifact_cap`` bytes while the pipe keeps being drained.
    """

    def __init__(self, cap: int, artifact: Path, artifact_cap: int) -> None:
        self.cap = cap
        self.artifact = artifact
        self.artifact_cap = artifact_cap
        self.total = 0
        self._head = bytearray()
        self._file: BinaryIO | None = None
        self._written = 0

    @property
    def truncated(self) -> bool:
        """True when the stream was longer than the cap."""
        return self.total > self.cap

    async def consume(self, reader: asyncio.StreamReader) -> None:
        """Read ``reader`` to its end."""
        try:
            while chunk := await reader.read(65536):
                self.total += len(chunk)
                if self._file is None and self.total <= self.cap:
                    self._head += chunk
                    continue
                if self._file is None:
                    self._file = await asyncio.to_thread(self._open)
                    self._head += chunk[: self.cap - len(self._head)]
                if self._written < self.artifact_cap:
                    part = chunk[: self.artifact_cap - self._written]
                    await asyncio.to_thread(self._file.write, part)
                    self._written += len(part)
        finally:
            if self._file is not None:
                await asyncio.to_thread(self._file.close)

    def _open(self) -> BinaryIO:
        self.artifact.parent.mkdir(parents=True, exist_ok=True)
        file = self.artifact.open("wb")
        file.write(self._head[: self.artifact_cap])
        self._written = min(len(self._head), self.artifact_cap)
        return file

    def text(self) -> str:
        """The kept head, with a marker naming the artifact when it was truncated."""
        text = self._head.decode(errors="replace")
        if self.truncated:
            kept = (
                ""
                if self._written >= self.total
                else f" (its first {count(self._written, 'byte')})"
            )
            text += (
                f"\n[output truncated at {count(self.cap, 'byte')}; full output: artifact "
                f"{self.artifact.name}{kept}]"
            )
        return text


class LauncherSandbox:
    """A sandbox whose launcher is already running; subclasses say how it is confined."""

    backend = "launcher"
    ready_timeout_s = 10.0

    def __init__(
        self,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        workdir: Path,
        on_event: Callable[[SandboxEvent], None] | None,
        prestart: Prestart | None = None,
    ) -> None:
        self.id = secrets.token_hex(6)
        self.prestart = prestart
        self.policy = policy
        self.limits = limits
        self.workdir = workdir
        self._on_event = on_event
        self._end = f"AGENTRT_END_{secrets.token_hex(8)}"
        self._state: SandboxState = "created"
        self._proc: asyncio.subprocess.Process | None = None
        self._reason: EndReason | None = None  # set when we stop it (first reason wins)
        self._used = False
        self._started = 0.0
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._done = asyncio.Event()

    # --- what a backend provides ---------------------------------------------

    async def _spawn(self, launcher_program: str) -> asyncio.subprocess.Process:
        raise NotImplementedError

    async def _after_ready(self) -> None:
        """Apply what needs the ready process (rlimits)."""

    def _kill_all(self) -> None:
        raise NotImplementedError

    async def _freeze(self) -> None:
        raise NotImplementedError

    async def _thaw(self) -> None:
        raise NotImplementedError

    def _limit_hit(self) -> EndReason | None:
        """A limit the backend watches itself (polled), or None."""
        return None

    async def _settle(self) -> None:
        """Wait for what the backend learns after the process exited."""

    def _classify(self, returncode: int) -> tuple[EndReason, int | None]:
        raise NotImplementedError

    def _usage(self) -> tuple[float | None, int | None]:
        return None, None

    def _command_env(self) -> Mapping[str, str]:
        """The command's whole environment: the policy's, plus what the backend adds."""
        return self.policy.env

    def _egress(self) -> tuple[dict[str, object], ...]:
        """The connections the command asked for through an egress proxy, if any."""
        return ()

    async def _release(self) -> None:
        """Free what the sandbox holds beyond its processes (cgroups)."""

    # --- the contract ----------------------------------------------------------

    @property
    def state(self) -> SandboxState:
        """The current state."""
        return self._state

    def _emit(self, state: SandboxState, reason: EndReason | None = None, detail: str = "") -> None:
        self._state = state
        if self._on_event is not None:
            try:
                self._on_event(SandboxEvent(self.id, self.backend, state, reason, detail))
            except Exception:  # a broken listener must not break the sandbox
                log.exception("sandbox event listener failed")

    async def start(self) -> None:
        """Start the launcher and wait until it is ready for a command.

        Raises:
            SandboxUnavailable: the launcher (or the sandbox around it) failed to start.
        """
        program = (
            launcher(self._end)
            if self.prestart is None
            else prestart_launcher(self.prestart, self.policy.env)
        )
        proc = self._proc = await self._spawn(program)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(self.ready_timeout_s):
                await proc.stdout.readexactly(1)
            await self._after_ready()
        except BaseException as exc:  # cancelled too: never leave a half-made sandbox
            why = await asyncio.shield(self._abort_start())
            if isinstance(exc, asyncio.IncompleteReadError | TimeoutError | OSError):
                raise SandboxUnavailable(
                    f"{self.backend} sandbox failed to start: {why or type(exc).__name__}"
                ) from None
            raise
        self._emit("created")

    async def _abort_start(self) -> str:
        """Kill and release a sandbox that did not become ready; return its stderr."""
        self._kill_all()
        why = ""
        proc = self._proc
        if proc is not None and proc.stderr is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await proc.wait()
                    why = (await proc.stderr.read()).decode(errors="replace").strip()
        await self._release()
        self._done.set()
        return why

    def _active_s(self) -> float:
        now = asyncio.get_running_loop().time()
        paused = self._paused_total + (now - self._paused_at if self._paused_at else 0.0)
        return now - self._started - paused

    def _stop(self, reason: EndReason) -> None:
        if self._reason is None:
            self._reason = reason
        self._kill_all()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            if self._paused_at is not None:
                continue  # frozen: neither wall time nor CPU time moves
            if self._active_s() >= self.limits.wall_s:
                self._stop("timeout")
                return
            hit = self._limit_hit()
            if hit is not None:
                self._stop(hit)
                return

    async def _feed(self, data: bytes) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(data)
            await proc.stdin.drain()
            proc.stdin.close()

    async def exec(self, argv: Sequence[str], *, stdin: bytes | None = None) -> ExecResult:
        """Run ``argv`` to its end (or its limit) and report what happened.

        A sandbox runs one command; a second call raises ``RuntimeError``, and
        so does a command other than the one a pre-started sandbox runs.
        """
        if self._used or self._state != "created" or self._proc is None:
            raise RuntimeError(f"sandbox {self.id} was already used; create a new one")
        if self.prestart is not None and (tuple(argv) != self.prestart.argv or stdin):
            raise RuntimeError(
                f"sandbox {self.id} was started ahead for {list(self.prestart.argv)}, "
                "without stdin; create one without `prestart` to run anything else"
            )
        self._used = True
        script = (
            b"go\n"
            if self.prestart is not None
            else command_script(argv, self._command_env(), self._end)
        )
        proc = self._proc
        assert proc.stdout is not None and proc.stderr is not None
        artifacts = self.workdir / "artifacts"
        cap, artifact_cap = self.limits.output_bytes, self.limits.artifact_bytes
        out = CappedOutput(cap, artifacts / f"{self.id}.stdout.txt", artifact_cap)
        err = CappedOutput(cap, artifacts / f"{self.id}.stderr.txt", artifact_cap)
        crashed = proc.returncode is not None  # the launcher died while it waited
        self._started = asyncio.get_running_loop().time()
        self._emit("running")
        readers = [
            asyncio.create_task(out.consume(proc.stdout)),
            asyncio.create_task(err.consume(proc.stderr)),
        ]
        feeder = asyncio.create_task(self._feed(script + (stdin or b"")))
        watchdog = asyncio.create_task(self._watch())
        try:
            returncode = await proc.wait()
            self._kill_all()  # whatever it left behind
            # A process that escaped the group may still hold the pipes open.
            _, pending = await asyncio.wait(readers, timeout=2.0)
            for task in pending:
                task.cancel()
            await self._settle()
        except BaseException:
            self._stop("terminated")
            await asyncio.shield(self._finish())
            raise
        finally:
            feeder.cancel()
            watchdog.cancel()
        duration = self._active_s()
        reason: EndReason
        exit_code: int | None
        if crashed:
            reason, exit_code = "sandbox_crashed", None
        elif self._reason is not None:
            reason, exit_code = self._reason, None
        else:
            reason, exit_code = self._classify(returncode)
        cpu_s, memory = self._usage()
        await self._finish(reason)
        artifact = out.artifact if out.truncated else err.artifact if err.truncated else None
        return ExecResult(
            backend=self.backend,
            sandbox_id=self.id,
            reason=reason,
            exit_code=exit_code,
            stdout=out.text(),
            stderr=err.text(),
            truncated=out.truncated or err.truncated,
            artifact=artifact,
            duration_s=duration,
            cpu_s=cpu_s,
            max_memory_bytes=memory,
            egress=self._egress(),
        )

    async def _finish(self, reason: EndReason | None = None) -> None:
        if self._done.is_set():
            return
        if self._proc is not None and self._proc.returncode is None:
            self._kill_all()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._proc.wait()
        await self._release()
        self._done.set()
        self._emit("exited", reason or self._reason)

    async def pause(self) -> None:
        """Freeze every process; the wall clock stops until :meth:`resume`."""
        if self._state != "running":
            return
        await self._freeze()
        self._paused_at = asyncio.get_running_loop().time()
        self._emit("paused")

    async def resume(self) -> None:
        """Continue after :meth:`pause`."""
        if self._state != "paused" or self._paused_at is None:
            return
        await self._thaw()
        self._paused_total += asyncio.get_running_loop().time() - self._paused_at
        self._paused_at = None
        self._emit("running")

    async def snapshot(self, dest: Path) -> Path:
        """Copy the scratch directory to ``dest`` (or ``dest/<id>`` if ``dest`` exists).

        No process checkpoint is taken. A running sandbox is frozen during the
        copy so that the copy is consistent. The copy is normalised like every
        file that comes back from a sandbox (:func:`~.files.copy_out`).
        """
        target = dest / self.id if await asyncio.to_thread(dest.exists) else dest
        was_running = self._state == "running"
        if was_running:
            await self.pause()
        try:
            await asyncio.to_thread(copy_out, self.policy.scratch, target)
        finally:
            if was_running:
                await self.resume()
        return target

    async def terminate(self) -> None:
        """Kill everything in the sandbox and release it. Idempotent."""
        if self._state == "terminated":
            return
        if self._state in ("running", "paused"):
            self._stop("terminated")
            if self._state == "paused":
                await self._thaw()
            await self._done.wait()
        elif not self._done.is_set():
            self._reason = self._reason or "terminated"
            await self._finish()
        self._emit("terminated", self._reason)
