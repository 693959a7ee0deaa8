"""The sandbox contract: every backend (gVisor, bubblewrap, process) implements it.

A sandbox is created for one tool call (never reused across runs or tenants),
executes a command with a policy (network, environment, files) and limits
(wall time, CPU, memory, processes, output), can be paused, resumed,
snapshotted and terminated, and reports every change of state as an event.
Every end of a sandbox has an explicit reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from agentrt.tools.sandbox.identity import SandboxUser

__all__ = [
    "END_REASONS",
    "EndReason",
    "ExecResult",
    "ProbeResult",
    "Sandbox",
    "SandboxBackend",
    "SandboxEvent",
    "SandboxLimits",
    "SandboxPolicy",
    "SandboxState",
    "SandboxUnavailable",
    "largest_file",
]

EndReason = Literal[
    "ok",  # the command exited by itself (whatever its exit code)
    "timeout",  # killed at the wall-clock limit
    "oom_killed",  # killed at the memory limit
    "pids_exceeded",  # stopped at the process limit
    "cpu_exceeded",  # killed at the CPU-time limit
    "sandbox_crashed",  # the sandbox itself failed
    "terminated",  # terminated on request
    "disk_exceeded",  # wrote past its disk or file quota (its writes are discarded)
]
END_REASONS: tuple[str, ...] = (
    "ok",
    "timeout",
    "oom_killed",
    "pids_exceeded",
    "cpu_exceeded",
    "sandbox_crashed",
    "terminated",
    "disk_exceeded",
)
SandboxState = Literal["created", "running", "paused", "exited", "terminated"]


class SandboxUnavailable(Exception):
    """The backend cannot run on this machine (the message says why)."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Resource limits of one sandbox. ``None`` means no limit of that kind."""

    wall_s: float = 30.0
    cpu_s: float | None = 10.0
    memory_mb: int | None = 256
    pids: int | None = 64
    output_bytes: int = 65536  # kept of each of stdout and stderr; the rest goes to an artifact
    artifact_bytes: int = 64 * 1024 * 1024  # an artifact stops growing here (the pipe drains on)
    disk_mb: int = 64  # the largest file a command may write, and the size of its /tmp


def largest_file(limits: SandboxLimits) -> int:
    """RLIMIT_FSIZE for a command: one byte past ``disk_mb``, so that a file the limit
    stopped is visibly past the quota (and a sparse file cannot grow past it)."""
    return (limits.disk_mb << 20) + 1


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    """What the sandboxed command may see and reach.

    The root file system is read-only; ``scratch`` is the only writable
    directory besides a private ``/tmp`` (mounted at ``/scratch`` and used as
    the working directory). The backend makes it writable for the sandbox's
    user; what the command leaves there is untrusted (see :mod:`.files`).
    ``network`` is ``"none"`` or an allow-list of ``host:port``. ``env`` is
    the whole environment of the command (already filtered by the caller).
    """

    scratch: Path
    network: Literal["none"] | tuple[str, ...] = "none"
    env: Mapping[str, str] = field(default_factory=dict)
    read_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What one command did inside a sandbox."""

    backend: str
    sandbox_id: str
    reason: EndReason
    exit_code: int | None  # None when killed
    stdout: str  # at most limits.output_bytes, with a marker when truncated
    stderr: str
    truncated: bool
    artifact: Path | None  # the full output, when it was truncated
    duration_s: float
    cpu_s: float | None = None  # when the backend can tell
    max_memory_bytes: int | None = None
    # Connections asked of the egress proxy (network allow-lists): host, port, allowed.
    egress: tuple[dict[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Prestart:
    """A command a backend may start before it is asked for, to hide its start-up.

    ``ready_argv`` is started in the new sandbox with file descriptor 3 open for
    reading. Once it has loaded, it writes one byte to stdout (the sandbox is
    ready from then on), then waits for the line ``go`` on fd 3 and behaves
    exactly as ``argv`` would; on any other line, or end of file, it must exit
    at once without doing anything. :meth:`Sandbox.exec` of ``argv`` (without stdin) then
    only sends ``go``. A backend that does not pre-start commands ignores this,
    and ``exec(argv)`` runs ``argv`` as usual, so the two must be equivalent.
    """

    argv: tuple[str, ...]
    ready_argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SandboxEvent:
    """A change of state of a sandbox."""

    sandbox_id: str
    backend: str
    state: SandboxState
    reason: EndReason | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Whether a backend works here, and why not."""

    backend: str
    ok: bool
    detail: str


@runtime_checkable
class Sandbox(Protocol):
    """One isolated environment for one tool call."""

    id: str
    backend: str

    @property
    def state(self) -> SandboxState:
        """The current state."""
        ...

    async def exec(self, argv: Sequence[str], *, stdin: bytes | None = None) -> ExecResult:
        """Run ``argv`` to its end (or its limit) and report what happened."""
        ...

    async def pause(self) -> None:
        """Freeze every process of the sandbox; paused time does not count as wall time."""
        ...

    async def resume(self) -> None:
        """Continue after :meth:`pause`."""
        ...

    async def snapshot(self, dest: Path) -> Path:
        """Save the sandbox's state (checkpoint where the backend can; else its scratch)."""
        ...

    async def terminate(self) -> None:
        """Kill everything in the sandbox and release its resources. Idempotent."""
        ...


@runtime_checkable
class SandboxBackend(Protocol):
    """A kind of sandbox. ``strength`` ranks its isolation (``auto`` follows AUTO_ORDER)."""

    name: str
    strength: int
    user: SandboxUser  # who its sandboxed code runs as (never the host's root)

    async def probe(self) -> ProbeResult:
        """A short self-test: can this backend isolate and limit a command here?"""
        ...

    async def create(
        self,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        on_event: Callable[[SandboxEvent], None] | None = None,
        prestart: Prestart | None = None,
    ) -> Sandbox:
        """A new, never-used sandbox. Raises SandboxUnavailable if it cannot run here.

        ``prestart`` is a hint: the command the sandbox will most likely run.
        """
        ...

    async def reap(self) -> int:
        """Remove sandboxes, cgroups and bundles left by a crashed runtime; return the count."""
        ...
