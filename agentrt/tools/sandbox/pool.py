"""A warm pool of ready, never-used sandboxes, and the scratch directories they use.

"Ready" is whatever a backend's ``create`` returns: for bubblewrap and process,
a launcher that is already running inside its namespaces, cgroup and rlimits,
blocked reading its command from a pipe. Taking one from the pool costs a list
pop; running a command then costs one write. Each sandbox is handed out once
and never returned to the pool; the pool refills in the background after each
hand-out, and creates one on demand when it is empty.

Scratch: a pooled sandbox is created before anyone knows which run will use
it, so it cannot bind-mount the run's scratch directory. Instead each pooled
sandbox gets its own empty directory (``<workdir>/scratch/agentrt-<pid>-<id>/root``,
bind-mounted at ``/scratch``), and :class:`Lease` moves the run's files into it
before the command and back after it. Moving is a ``rename`` per top-level
entry (a copy only if the two directories are on different file systems).
Next to ``root`` an ``origin`` file (outside the sandbox's view) names the
run's directory, so that :func:`reap_scratch` can give the files back after a
crash between the two moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from agentrt.engine.owner import owner_is_dead
from agentrt.tools.sandbox.base import (
    Prestart,
    Sandbox,
    SandboxBackend,
    SandboxEvent,
    SandboxLimits,
    SandboxPolicy,
)

__all__ = ["Lease", "PoolKey", "SandboxPool", "move_entries", "reap_scratch", "scratch_dir"]

log = logging.getLogger(__name__)

_HOME = re.compile(r"^agentrt-(\d+)-[0-9a-f]+$")


@dataclass(frozen=True, slots=True)
class PoolKey:
    """What makes two sandboxes interchangeable: everything but the scratch directory."""

    backend: str
    network: str | tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    read_paths: tuple[str, ...]
    limits: SandboxLimits
    prestart: Prestart | None = None

    @classmethod
    def of(
        cls,
        backend: str,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        prestart: Prestart | None = None,
    ) -> PoolKey:
        """The key of sandboxes of ``backend`` made with ``policy``, ``limits``, ``prestart``."""
        env = tuple(sorted(policy.env.items()))
        return cls(backend, policy.network, env, policy.read_paths, limits, prestart)


async def _new_home(root: Path) -> Path:
    home = root / f"agentrt-{os.getpid()}-{secrets.token_hex(6)}"
    await asyncio.to_thread((home / "root").mkdir, mode=0o700, parents=True)
    return home


@contextlib.asynccontextmanager
async def scratch_dir(root: Path) -> AsyncIterator[Path]:
    """A fresh, empty scratch directory under ``root``, removed afterwards.

    Named like a pooled sandbox's, so :func:`reap_scratch` removes it if the
    runtime dies while it exists.
    """
    home = await _new_home(root)
    try:
        yield home / "root"
    finally:
        await asyncio.to_thread(shutil.rmtree, home, True)


def move_entries(src: Path, dst: Path) -> None:
    """Move every top-level entry of ``src`` into ``dst``, replacing same-named ones."""
    for entry in os.scandir(src):
        target = dst / entry.name
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        try:
            os.rename(entry.path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(entry.path, target)  # another file system: copy (links as links)


@dataclass(slots=True)
class Lease:
    """A sandbox handed out by a pool, with its own scratch directory."""

    sandbox: Sandbox
    home: Path  # holds ``root`` (the sandbox's /scratch) and the ``origin`` note

    @property
    def scratch(self) -> Path:
        """The directory the sandbox sees as ``/scratch``."""
        return self.home / "root"

    async def adopt(self, run_scratch: Path) -> None:
        """Move the run's files in (and note where they came from)."""

        def move_in() -> None:
            if self.home.resolve().is_relative_to(run_scratch.resolve()):
                raise ValueError(f"the run's scratch {run_scratch} contains the sandbox's")
            run_scratch.mkdir(parents=True, exist_ok=True)
            (self.home / "origin").write_text(str(run_scratch))
            move_entries(run_scratch, self.scratch)

        await asyncio.to_thread(move_in)

    async def give_back(self, run_scratch: Path) -> None:
        """Move every file (the run's and the new ones) back to the run's directory."""

        def move_out() -> None:
            move_entries(self.scratch, run_scratch)
            (self.home / "origin").unlink(missing_ok=True)

        await asyncio.to_thread(move_out)

    async def release(self) -> None:
        """Terminate the sandbox and delete its scratch directory."""
        try:
            await self.sandbox.terminate()
        finally:
            await asyncio.to_thread(shutil.rmtree, self.home, True)


class SandboxPool:
    """Ready sandboxes of one :class:`PoolKey`, refilled in the background.

    Args:
        backend: makes the sandboxes.
        policy: the policy of every sandbox; its ``scratch`` is replaced by each
            sandbox's own directory.
        limits: the limits of every sandbox.
        size: how many ready sandboxes to keep (0 disables warming).
        prestart: the command the sandboxes will run, for backends that can start
            it ahead (see :class:`Prestart`).
        root: where the scratch directories are made (``<workdir>/scratch``, so
            that the backend's ``reap`` finds them).
        on_event: receives every sandbox's events.
    """

    def __init__(
        self,
        backend: SandboxBackend,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        root: Path,
        size: int = 2,
        on_event: Callable[[SandboxEvent], None] | None = None,
        prestart: Prestart | None = None,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.limits = limits
        self.size = size
        self.root = root
        self.prestart = prestart
        self.key = PoolKey.of(backend.name, policy, limits, prestart)
        self.last_error: BaseException | None = None
        self._on_event = on_event
        self._idle: list[Lease] = []
        self._refill: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def ready(self) -> int:
        """How many sandboxes wait in the pool now."""
        return len(self._idle)

    async def _new(self) -> Lease:
        home = await _new_home(self.root)
        policy = replace(self.policy, scratch=home / "root")
        try:
            sandbox = await self.backend.create(
                policy, self.limits, on_event=self._on_event, prestart=self.prestart
            )
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, home, True)
            raise
        return Lease(sandbox, home)

    def warm(self) -> None:
        """Start filling the pool in the background (no-op if already filling)."""
        if self._closed or self.size <= 0:
            return
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fill())

    async def fill(self) -> None:
        """Fill the pool now and wait until it is full (or a creation failed)."""
        self.warm()
        if self._refill is not None:
            await asyncio.shield(self._refill)

    async def _fill(self) -> None:
        while not self._closed and len(self._idle) < self.size:
            try:
                lease = await self._new()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the error for acquire(), stop retrying
                self.last_error = exc
                log.warning("sandbox pool %s: cannot create a sandbox: %s", self.key.backend, exc)
                return
            if self._closed:
                await lease.release()
                return
            self._idle.append(lease)

    async def acquire(self) -> Lease:
        """A ready, never-used sandbox: from the pool, or created now if it is empty."""
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        lease = self._idle.pop(0) if self._idle else None
        self.warm()
        return lease if lease is not None else await self._new()

    async def close(self) -> None:
        """Stop refilling and terminate every sandbox still waiting."""
        self._closed = True
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        idle, self._idle = self._idle, []
        for lease in idle:
            await lease.release()


def _reap_one(home: Path) -> None:
    origin_note = home / "origin"
    with contextlib.suppress(OSError):
        origin = Path(origin_note.read_text())
        if origin.is_dir():
            move_entries(home / "root", origin)  # a crash between adopt and give_back
    shutil.rmtree(home, ignore_errors=True)


async def reap_scratch(workdir: Path) -> int:
    """Remove scratch directories of dead runtimes (files of a run go back to it).

    Returns:
        How many directories were removed.
    """
    root = workdir / "scratch"

    def dead_homes() -> list[Path]:
        if not root.is_dir():
            return []
        host = socket.gethostname()
        return [
            entry
            for entry in root.iterdir()
            if (m := _HOME.match(entry.name)) and owner_is_dead(f"{host}:{m.group(1)}:scratch")
        ]

    homes = await asyncio.to_thread(dead_homes)
    for home in homes:
        await asyncio.to_thread(_reap_one, home)
    return len(homes)
